"""Watch: the puts and deletes of a namespace's log, for a key or a key prefix, as
Server-Sent Events, in each partition's log order, resumable from a position vector.

The stage's parts: `events` (what a record did, as an event and as SSE text),
`decisions` (which records took no effect, as the cache that applied them decided),
`history` (whether the log still holds everything a resume needs), `hub` (one reader
of the log per worker process, fanned out to every watch in it) and `stream` (one
client's watch: its backlog, its queue, its frames). Why it is served this way:
docs/WATCH.md.
"""
