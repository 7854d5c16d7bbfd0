-- wrk script for the click path: every request comes from one of 1,024 client addresses spread
-- over many countries and networks (sent as X-Forwarded-For; the bench config trusts 127.0.0.1)
-- with one of 20 real User-Agents, to one of the demo campaigns, with source tokens filled in.

-- The address prefixes and User-Agents are shared with the fixed-rate generator
-- (examples/load_fixed_rate.rs): bench/addresses.txt and bench/user-agents.txt.
local function lines(path)
  local out = {}
  for line in io.lines(path) do
    if line ~= "" and line:sub(1, 1) ~= "#" then out[#out + 1] = line end
  end
  return out
end

local prefixes = lines("bench/addresses.txt")
local uas = lines("bench/user-agents.txt")

local campaigns = { "us-android", "global-smartlink" }

math.randomseed(20261123)
local ips = {}
for i = 1, 1024 do
  local prefix = prefixes[((i - 1) % #prefixes) + 1]
  ips[i] = prefix .. "." .. math.random(0, 255) .. "." .. math.random(1, 254)
end

local counter = 0
request = function()
  counter = counter + 1
  local ip = ips[(counter % #ips) + 1]
  local ua = uas[(counter % #uas) + 1]
  local campaign = campaigns[(counter % #campaigns) + 1]
  local path = "/c/" .. campaign .. "?clickid=ext" .. counter .. "&zone=" .. (1000 + counter % 50) .. "&cost=1.25"
  return wrk.format("GET", path, { ["X-Forwarded-For"] = ip, ["User-Agent"] = ua, ["Accept-Language"] = "en-US,en;q=0.9" })
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format("requests %d, errors %d, %.0f req/s\n", summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout,
    summary.requests / seconds))
  for _, p in ipairs({ 50, 90, 99, 99.9 }) do
    io.write(string.format("p%s %.3f ms\n", p, latency:percentile(p) / 1000))
  end
end
