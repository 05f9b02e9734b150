-- The lab's wrk script: builds the scenario's request, checks every response, and writes the
-- numbers as JSON from done() (the harness never reads wrk's text output).
--
-- Configured by environment variables (wrk passes its environment to every Lua state; done()
-- runs in the main state, which never sees init()'s arguments):
--   LAB_WRK_OUT            where done() writes its JSON (required)
--   LAB_WRK_METHOD         request method (GET)
--   LAB_WRK_PATH           path; "{id}" is replaced per request by a random integer in
--                          LAB_WRK_ID_MIN..LAB_WRK_ID_MAX (inclusive)
--   LAB_WRK_HEADERS        extra request headers, one "Name: value" per line
--   LAB_WRK_BODY           request body (wrk.format adds Content-Length)
--   LAB_WRK_SEED           seeds math.random, per thread (seed * 1000 + thread id)
--   LAB_WRK_EXPECT_BODY    a substring every response body must contain
--   LAB_WRK_EXPECT_HEADER  "name: value" every response must carry (name case-insensitive)
--   LAB_WRK_COUNT_HEADER   a header whose values are counted (e.g. x-cache: HIT/MISS)
--   LAB_WRK_NO_RESPONSE    "1" removes response(): for measuring what the hook costs only
--   LAB_WRK_REVALIDATE     "1": a caching client; after the first response with an ETag every
--                          request carries If-None-Match with the last ETag seen (one fixed path)
--
-- A path without "{id}" leaves request() undefined, so wrk sends one pre-built request (its
-- static fast path). Each thread is its own Lua state: per-thread counters are read back in
-- done() through the thread objects kept by setup().

local threads = {}
local thread_count = 0

local function env(name, default)
   local value = os.getenv(name)
   if value == nil or value == "" then
      return default
   end
   return value
end

function setup(thread)
   thread_count = thread_count + 1
   thread:set("id", thread_count)
   table.insert(threads, thread)
end

function init(args)
   statuses = {}
   header_counts = {}
   mismatches = 0
   responses = 0

   wrk.method = env("LAB_WRK_METHOD", "GET")
   local body = env("LAB_WRK_BODY", nil)
   if body ~= nil then
      wrk.body = body
   end
   for line in string.gmatch(env("LAB_WRK_HEADERS", ""), "[^\n]+") do
      local name, value = string.match(line, "^%s*([^:]+):%s*(.-)%s*$")
      if name ~= nil then
         wrk.headers[name] = value
      end
   end

   local path = env("LAB_WRK_PATH", "/")
   local at = string.find(path, "{id}", 1, true)
   revalidate = env("LAB_WRK_REVALIDATE", "") == "1"
   if revalidate then
      -- Built once per new ETag, not per request: the request string is reused until the
      -- server's representation (and so its ETag) changes.
      wrk.path = path
      local plain = wrk.format()
      local built = plain
      request = function()
         if etag ~= built_for then
            local headers = {}
            for name, value in pairs(wrk.headers) do
               headers[name] = value
            end
            headers["If-None-Match"] = etag
            built = etag and wrk.format(nil, path, headers) or plain
            built_for = etag
         end
         return built
      end
   elseif at ~= nil then
      local head = string.sub(path, 1, at - 1)
      local tail = string.sub(path, at + 4)
      local lo = tonumber(env("LAB_WRK_ID_MIN", "1"))
      local hi = tonumber(env("LAB_WRK_ID_MAX", "1"))
      math.randomseed(tonumber(env("LAB_WRK_SEED", "1")) * 1000 + id)
      local random = math.random
      request = function()
         return wrk.format(nil, head .. random(lo, hi) .. tail)
      end
      wrk.path = head .. lo .. tail
   else
      wrk.path = path
   end

   expect_body = env("LAB_WRK_EXPECT_BODY", nil)
   local expect = env("LAB_WRK_EXPECT_HEADER", nil)
   if expect ~= nil then
      local name, value = string.match(expect, "^%s*([^:]+):%s*(.-)%s*$")
      expect_name, expect_value = string.lower(name), value
   end
   local present = env("LAB_WRK_HEADER_PRESENT", nil)
   if present ~= nil then
      present_name = string.lower(present)
   end
   local counted = env("LAB_WRK_COUNT_HEADER", nil)
   if counted ~= nil then
      count_name = string.lower(counted)
   end
   if env("LAB_WRK_NO_RESPONSE", "") == "1" then
      response = nil
   end
end

function response(status, headers, body)
   responses = responses + 1
   statuses[status] = (statuses[status] or 0) + 1
   if revalidate then
      for name, value in pairs(headers) do
         if string.lower(name) == "etag" then
            etag = value
         end
      end
   end
   if expect_body ~= nil and string.find(body, expect_body, 1, true) == nil then
      mismatches = mismatches + 1
   end
   if expect_name ~= nil or present_name ~= nil or count_name ~= nil then
      local seen = false
      local carried = false
      for name, value in pairs(headers) do
         local lower = string.lower(name)
         if lower == expect_name then
            seen = value == expect_value
         end
         if lower == present_name then
            carried = true
         end
         if lower == count_name then
            header_counts[value] = (header_counts[value] or 0) + 1
         end
      end
      if (expect_name ~= nil and not seen) or (present_name ~= nil and not carried) then
         mismatches = mismatches + 1
      end
   end
end

local function quote(text)
   local escaped = string.gsub(tostring(text), '[%c"\\]', function(c)
      return string.format("\\u%04x", string.byte(c))
   end)
   return '"' .. escaped .. '"'
end

local function counts(tables)
   local merged = {}
   for _, t in ipairs(tables) do
      for key, n in pairs(t) do
         merged[key] = (merged[key] or 0) + n
      end
   end
   local parts = {}
   for key, n in pairs(merged) do
      table.insert(parts, quote(key) .. ":" .. string.format("%.0f", n))
   end
   table.sort(parts)
   return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
   local status_tables, header_tables = {}, {}
   local total_mismatches, total_responses = 0, 0
   for _, thread in ipairs(threads) do
      table.insert(status_tables, thread:get("statuses") or {})
      table.insert(header_tables, thread:get("header_counts") or {})
      total_mismatches = total_mismatches + (thread:get("mismatches") or 0)
      total_responses = total_responses + (thread:get("responses") or 0)
   end
   local e = summary.errors
   local out = {
      '{"format":"lab-wrk/1"',
      string.format('"threads":%d', #threads),
      string.format('"duration_us":%.0f', summary.duration),
      string.format('"requests":%.0f', summary.requests),
      string.format('"bytes":%.0f', summary.bytes),
      string.format('"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
         e.connect, e.read, e.write, e.status, e.timeout),
      string.format('"latency_us":{"min":%.0f,"mean":%.3f,"stdev":%.3f,"max":%.0f,'
         .. '"p50":%.0f,"p75":%.0f,"p90":%.0f,"p99":%.0f,"p99_9":%.0f}',
         latency.min, latency.mean, latency.stdev, latency.max,
         latency:percentile(50), latency:percentile(75), latency:percentile(90),
         latency:percentile(99), latency:percentile(99.9)),
      '"statuses":' .. counts(status_tables),
      '"header_counts":' .. counts(header_tables),
      string.format('"responses":%.0f', total_responses),
      string.format('"mismatches":%.0f', total_mismatches),
      string.format('"response_hook":%s}', env("LAB_WRK_NO_RESPONSE", "") == "1" and "false" or "true"),
   }
   local path = os.getenv("LAB_WRK_OUT")
   local file = assert(io.open(path, "w"))
   file:write(table.concat(out, ","), "\n")
   file:close()
end
