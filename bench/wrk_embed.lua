-- wrk script for the embedding service: POSTs bodies that vary in text and length.
--
--   wrk -t2 -c8 -d30s -s bench/wrk_embed.lua http://127.0.0.1:8080
--   BATCH=16 ENDPOINT=openai wrk -t2 -c4 -d30s -s bench/wrk_embed.lua http://127.0.0.1:8080
--
-- BATCH: texts per request (default 1). ENDPOINT: native (/embed_text, default) or openai (/v1/embeddings).
-- At the end it prints latency percentiles and the count of non-2xx answers, which wrk's own
-- summary only shows when there are some.

local texts = {
  "What is an embedding?",
  "Vector search finds the passages whose embeddings lie closest to the query.",
  "A worker that loads its own copy of a model multiplies the memory bill by the number of workers.",
  "Latency percentiles say more than averages: the slowest request in a hundred is what a user eventually waits for, and it is usually queueing rather than computing that makes it slow.",
  "ok",
  "The quick brown fox jumps over the lazy dog.",
  "Batching amortises the fixed cost of a forward pass over many inputs, but padding every input to the longest one in its batch wastes work, which is why inputs of similar length are best batched together.",
  "Retry with backoff when the server answers 503 with a Retry-After header.",
  "Copy-on-write lets forked processes share memory pages until one of them writes.",
  "Measure, then change one thing, then measure again.",
}

local batch = tonumber(os.getenv("BATCH") or "1")
local openai = os.getenv("ENDPOINT") == "openai"
local path = openai and "/v1/embeddings" or "/embed_text"
local key = openai and "input" or "texts"
local headers = { ["Content-Type"] = "application/json" }
local counter = 0

request = function()
  local items = {}
  for i = 1, batch do
    counter = counter + 1
    items[i] = '"' .. texts[(counter % #texts) + 1] .. '"'
  end
  local body = '{"' .. key .. '": [' .. table.concat(items, ", ") .. "]}"
  return wrk.format("POST", path, headers, body)
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("requests: %d, non-2xx: %d, socket errors: %d\n", summary.requests, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout))
  for _, p in ipairs({ 50, 90, 99 }) do
    io.write(string.format("p%d latency: %.2f ms\n", p, latency:percentile(p) / 1000.0))
  end
  io.write(string.format("texts/s: %.1f\n", summary.requests * batch / (summary.duration / 1000000.0)))
end
