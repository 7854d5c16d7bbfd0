-- wrk script: makes clicks and appends each click id found in the redirect to $CLICKS_FILE
-- (one per line), for the postback benchmark.
local file = io.open(os.getenv("CLICKS_FILE") or "var/bench/clicks.txt", "a")

request = function()
  return wrk.format("GET", "/c/split?zone=1", {
    ["X-Forwarded-For"] = "79.192.10.20",
    ["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
  })
end

response = function(status, headers, body)
  local location = headers["Location"] or headers["location"]
  if location then
    for value in location:gmatch("[?&][%w_]+=([%w_%-]+)") do
      if #value == 22 then
        file:write(value, "\n")
        file:flush()
        break
      end
    end
  end
end
