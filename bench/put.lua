-- wrk script: PUT a small JSON value under a fresh key per request; reports p50/p99 and 202 answers.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  accepted = 0
  math.randomseed(os.time() + id)
end

function request()
  counter = counter + 1
  local key = string.format("bench-%d-%d-%d", id, math.random(1, 1000000000), counter)
  return wrk.format("PUT", "/api/kv/" .. key, {["Content-Type"] = "application/json"},
    string.format('{"name":"bench","n":%d,"pad":"%s"}', counter, string.rep("x", 40)))
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
