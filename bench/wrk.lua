-- wrk driver for bench/run.py (--generator wrk): the same requests as bench/workloads.py, with less
-- CPU spent in the generator than the Python one. Checks status and resourceType of every response
-- (the Python generator also checks ids, match counts and includes). Prints one JSON line at the end.
--
--   wrk -t1 -c16 -d15s -s bench/wrk.lua http://127.0.0.1:P -- PLAN_FILE START_INDEX THREADS [TOKEN]
--
-- PLAN_FILE lines (tab-separated), written by bench/run.py:
--   W <workload>            create | read | search
--   G <path>                a GET path (read, search), cycled
--   T <json>                a Flag template per category, with @@PID@@ @@NHS@@ @@ORG@@
--   P <patient id> <nhs>    create subjects;  O <org id>  create authors

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local function split(line)
  local out = {}
  for field in string.gmatch(line, "[^\t]+") do table.insert(out, field) end
  return out
end

function init(args)
  -- each thread has its own Lua state: the thread count comes as an argument, the thread id from setup
  plan, start_index, nthreads, token = args[1], tonumber(args[2] or "0"), tonumber(args[3] or "1"), args[4]
  gets, templates, patients, orgs = {}, {}, {}, {}
  for line in io.lines(plan) do
    local f = split(line)
    if f[1] == "W" then kind = f[2]
    elseif f[1] == "G" then table.insert(gets, f[2])
    elseif f[1] == "T" then table.insert(templates, f[2])
    elseif f[1] == "P" then table.insert(patients, {f[2], f[3]})
    elseif f[1] == "O" then table.insert(orgs, f[2])
    end
  end
  k = 0
  errors = 0
  headers = {["Accept"] = "application/fhir+json", ["Content-Type"] = "application/fhir+json"}
  if token and token ~= "" then headers["Authorization"] = "Bearer " .. token end
  if kind == "create" then expect_status, expect_type = 201, '"resourceType":"Flag"'
  elseif kind == "read" then expect_status, expect_type = 200, '"resourceType":"Flag"'
  else expect_status, expect_type = 200, '"resourceType":"Bundle"' end
end

function request()
  -- request index i is unique across threads: start + tid + k * nthreads
  local i = start_index + tid + k * nthreads
  k = k + 1
  if kind ~= "create" then
    return wrk.format("GET", gets[(i % #gets) + 1], headers, nil)
  end
  -- the same (patient, category, org) mapping as Workload.request in bench/workloads.py
  local p = patients[(i % #patients) + 1]
  local rest = math.floor(i / #patients)
  local tpl = templates[(rest % #templates) + 1]
  local org = orgs[(math.floor(rest / #templates) % #orgs) + 1]
  local body = tpl:gsub("@@PID@@", p[1]):gsub("@@NHS@@", p[2]):gsub("@@ORG@@", org)
  return wrk.format("POST", "/fhir/Flag", headers, body)
end

function response(status, hdrs, body)
  if status ~= expect_status or not string.find(body, expect_type, 1, true) then
    errors = errors + 1
    if not first_error then first_error = status .. " " .. string.sub(body or "", 1, 300) end
  end
end

local function json_string(text)
  return '"' .. string.gsub(text, '[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function done(summary, latency, requests)
  local errs, used, first = 0, 0, ""
  for _, t in ipairs(threads) do
    errs = errs + (t:get("errors") or 0)
    if first == "" and t:get("first_error") then first = t:get("first_error") end
    local tk = t:get("k") or 0
    if tk > used then used = tk end
  end
  local e = summary.errors
  local transport = e.connect + e.read + e.write + e.timeout
  local secs = summary.duration / 1e6
  io.write(string.format(
    '{"requests": %d, "ok": %d, "errors": %d, "transport_errors": %d, "duration_s": %.3f, ' ..
    '"throughput": %.1f, "p50_ms": %.2f, "p95_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f, ' ..
    '"used_per_thread": %d, "threads": %d, "first_error": %s}\n',
    summary.requests, summary.requests - errs, errs + transport, transport, secs,
    (summary.requests - errs) / secs, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, used, #threads, json_string(first)))
end
