-- wrk script: one conversion postback a request, each a new identity (its own txid) for one of
-- the clicks in $CLICKS_FILE, so every request is a real write committed before its 200.
local ids = {}
for line in io.lines(os.getenv("CLICKS_FILE") or "var/bench/clicks.txt") do
  ids[#ids + 1] = line
end
local counter = 0

request = function()
  counter = counter + 1
  local id = ids[(counter % #ids) + 1]
  return wrk.format("GET", "/postback?clickid=" .. id .. "&payout=1.25&txid=t" .. counter .. "&event=sale")
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format("postbacks %d, non-2xx %d, %.0f per second\n", summary.requests,
    summary.errors.status, summary.requests / seconds))
  for _, p in ipairs({ 50, 90, 99 }) do
    io.write(string.format("p%s %.3f ms\n", p, latency:percentile(p) / 1000))
  end
end
