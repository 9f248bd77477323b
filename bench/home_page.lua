-- wrk script of bench/home_page.py: GET <path> as many different signed-in users, with HTMX headers.
--
--   wrk ... -s bench/home_page.lua <url> -- <path> <file of "<Authorization>\t<client address>" lines> <threads>
--
-- Each thread prepares one request per line of the file (Authorization: tma <initData>, X-Forwarded-For: the
-- user's own address, as behind the shop's proxy, HX-Request, HX-Target)
-- and sends them round robin, starting at its own offset, so that concurrent requests are for different users.
-- Every response status is counted (a non-2xx makes the run invalid), and done() prints one line,
-- "BENCH_RESULT {json}", with exact figures: latencies in microseconds from wrk's histogram.

local threads = {}
local thread_count = 0

function setup(thread)
   thread:set("id", thread_count)
   thread_count = thread_count + 1
   table.insert(threads, thread)
end

local prepared = {}
local cursor = 0
statuses = {} -- global: read from the main state by thread:get() in done()

function init(args)
   local path, file, threads_total = args[1], args[2], tonumber(args[3])
   for line in io.lines(file) do
      local authorization, address = line:match("^([^\t]+)\t(.+)$")
      if authorization then
         prepared[#prepared + 1] = wrk.format("GET", path, {
            ["Authorization"] = authorization,
            ["X-Forwarded-For"] = address,
            ["HX-Request"] = "true",
            ["HX-Target"] = "content",
         })
      end
   end
   if #prepared == 0 then
      error("no Authorization and address lines in " .. file)
   end
   cursor = math.floor(#prepared * id / threads_total)
end

function request()
   cursor = cursor % #prepared + 1
   return prepared[cursor]
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local merged = {}
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses") or {}) do
         merged[status] = (merged[status] or 0) + count
      end
   end
   local parts = {}
   for status, count in pairs(merged) do
      parts[#parts + 1] = string.format('"%d": %d', status, count)
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, '
         .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, "statuses": {%s}, '
         .. '"latency_us": {"min": %d, "mean": %.1f, "stdev": %.1f, "max": %d, '
         .. '"p50": %d, "p75": %d, "p90": %d, "p99": %d, "p99.9": %d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ", "),
      latency.min, latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(75), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9)
   ))
end
