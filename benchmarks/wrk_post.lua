-- wrk script: POST unique, correctly signed events read from pre-generated files.
--
-- HMAC-SHA256 is not available in wrk's LuaJIT, so benchmarks/load.py writes one file per
-- wrk thread, one request per line: "<signature header value>\t<body>". Each thread reads
-- its own file front to back, so no two requests carry the same event; if a thread runs
-- out it starts over and counts the wrap (the harness reports it: those are duplicates).
--
-- Arguments after `--`: <directory> <signature header name> <path> <collect ids: 0|1>.
-- Results go to $BENCH_WRK_OUT as JSON; accepted event ids, one per line, to
-- $BENCH_WRK_OUT.ids (so the harness can check each 2xx event is in the database).

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

function init(args)
   header_name = args[2]
   target_path = args[3]
   collect_ids = args[4] == "1"
   file = assert(io.open(args[1] .. "/requests-" .. id .. ".txt", "r"))
   sent = 0
   wrapped = 0
   ok = 0
   other = 0
   ids = {}
end

function request()
   local line = file:read("*l")
   if line == nil then
      wrapped = wrapped + 1
      file:seek("set", 0)
      line = file:read("*l")
   end
   local tab = line:find("\t", 1, true)
   local headers = { ["Content-Type"] = "application/json" }
   headers[header_name] = line:sub(1, tab - 1)
   sent = sent + 1
   return wrk.format("POST", target_path, headers, line:sub(tab + 1))
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      ok = ok + 1
      if collect_ids then
         local event_id = body:match('"event_id": *"([^"]+)"')
         if event_id then
            ids[#ids + 1] = event_id
         end
      end
   else
      other = other + 1
   end
end

function done(summary, latency, requests)
   local out_path = os.getenv("BENCH_WRK_OUT")
   local ids_file = assert(io.open(out_path .. ".ids", "w"))
   local sent_total, wrapped_total, ok_total, other_total = 0, 0, 0, 0
   for _, thread in ipairs(threads) do
      sent_total = sent_total + thread:get("sent")
      wrapped_total = wrapped_total + thread:get("wrapped")
      ok_total = ok_total + thread:get("ok")
      other_total = other_total + thread:get("other")
      for _, event_id in ipairs(thread:get("ids")) do
         ids_file:write(event_id, "\n")
      end
   end
   ids_file:close()
   local e = summary.errors
   local out = assert(io.open(out_path, "w"))
   out:write(string.format(
      '{"duration_us": %d, "requests": %d, "bytes": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}, ' ..
      '"sent": %d, "wrapped": %d, "ok": %d, "other": %d}',
      summary.duration, summary.requests, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9),
      sent_total, wrapped_total, ok_total, other_total))
   out:close()
end
