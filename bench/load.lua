-- wrk script. Modes:
--   get N    GET /api/users/{id}/ of a random existing user u000000 … u(N-1)
--   put N    PUT a new name and email to a random existing user
--   putkv    PUT a small JSON value under a fresh /api/kv/ key per request
--   getkv N  GET /api/kv/key-{n} of a random imported record key-0000000 … key-(N-1)
--   wrk ... -s bench/load.lua URL -- get 10000
-- Prints one RESULT line: requests, seconds, p50/p99 in ms, non-2xx answers, 202 (not applied) answers.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1] or "get"
  count = tonumber(args[2] or "10000")
  accepted, n = 0, 0
  math.randomseed(os.time() * 1000 + id)
end

function request()
  n = n + 1
  if mode == "putkv" then
    local key = string.format("bench-%d-%d-%d", id, math.random(1, 1000000000), n)
    return wrk.format("PUT", "/api/kv/" .. key, {["Content-Type"] = "application/json"},
      string.format('{"name":"bench","n":%d,"pad":"%s"}', n, string.rep("x", 40)))
  end
  if mode == "getkv" then
    return wrk.format("GET", string.format("/api/kv/key-%07d", math.random(0, count - 1)))
  end
  local path = string.format("/api/users/u%06d/", math.random(0, count - 1))
  if mode == "get" then
    return wrk.format("GET", path)
  end
  return wrk.format("PUT", path, {["Content-Type"] = "application/json"},
    string.format('{"name":"user %d-%d","email":"u%d@example.com"}', id, n, n))
end

function response(status, headers, body)
  if status == 202 then accepted = accepted + 1 end
end

function done(summary, latency, requests)
  local not_applied = 0
  for _, t in ipairs(threads) do not_applied = not_applied + t:get("accepted") end
  io.write(string.format("RESULT requests=%d seconds=%.3f p50_ms=%.3f p99_ms=%.3f non2xx=%d socket_errors=%d not_applied=%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    not_applied))
end
