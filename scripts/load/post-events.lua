-- wrk script: POST batches of realistic events to the collector's /v1/events.
-- Settings come from the environment: WRITE_KEY, BATCH (events per request),
-- DELAY_MS (pause after each response on each connection: 0 = as fast as the
-- collector answers; > 0 = a fixed offered load, see scripts/load-test.sh).
local batch = tonumber(os.getenv("BATCH") or "20")
local delay_ms = tonumber(os.getenv("DELAY_MS") or "0")
local key = os.getenv("WRITE_KEY") or ""
local kinds = { "page_view", "page_view", "page_view", "click", "click", "search", "add_to_cart", "purchase" }
local bodies = {}
local counter = 0

local function event(user, i)
  local kind = kinds[(i % #kinds) + 1]
  local price = 5 + (i * 7) % 300
  return string.format(
    '{"user_id":"load-%d","session_id":"session-%d","event_type":"%s",' ..
    '"page_url":"https://shop.example.com/products/p-%d","referrer":"https://www.google.com/",' ..
    '"properties":{"product_id":"p-%d","product_name":"Product %d","price":%d.99,' ..
    '"category":"electronics","cart_value":%d.99}}',
    user, user, kind, i % 500, i % 500, i % 500, price, price * 2)
end

function init(args)
  -- A few hundred distinct bodies so users spread over every partition.
  for b = 1, 200 do
    local events = {}
    for i = 1, batch do
      events[i] = event((b * batch + i) % 20000, b * batch + i)
    end
    bodies[b] = "[" .. table.concat(events, ",") .. "]"
  end
end

function request()
  counter = counter + 1
  return wrk.format("POST", "/v1/events", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. key,
    ["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
  }, bodies[(counter % #bodies) + 1])
end

function delay()
  return delay_ms
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  local failed = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    "WRK_RESULT requests=%d seconds=%.3f non2xx=%d socket_errors=%d p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f\n",
    summary.requests, summary.duration / 1e6, non2xx, failed,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000))
end
