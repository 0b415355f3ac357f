-- wrk script for bench/load_bench.py: authenticated POST /v1/chat, a new learner message
-- (and so a new conversation) on every request, so the embedding cache misses as it does
-- for real messages. Environment: BENCH_TOKEN (a bearer token), BENCH_RUN (a tag that
-- differs between wrk runs, so no run repeats another's messages).

local openers = {
  "How do Python decorators work in",
  "면접이 내일인데 너무 떨려요, 어떻게 준비하면 좋을까요",
  "My API p95 is 800ms, is that slow for",
  "다음 주까지 과제 세 개가 있는데 어떻게 나눠서 해야 할까요",
  "What's the difference between a process and a thread in",
  "테스트 커버리지 70%면 충분한가요",
  "I keep failing the same algorithm problem about",
  "코드 리뷰에서 지적을 많이 받았어요",
}

local token = os.getenv("BENCH_TOKEN") or ""
local run = os.getenv("BENCH_RUN") or "0"
local headers = {
  ["Content-Type"] = "application/json",
  ["Authorization"] = "Bearer " .. token,
}
local next_thread = 0
local sent = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_id", next_thread)
end

function request()
  sent = sent + 1
  local text = openers[sent % #openers + 1] .. " step " .. run .. "-" .. thread_id .. "-" .. sent .. "?"
  return wrk.format("POST", "/v1/chat", headers, '{"message":"' .. text .. '"}')
end
