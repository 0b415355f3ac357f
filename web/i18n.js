// UI text in English and Korean. The language comes from the browser (navigator.languages)
// until the learner picks one, which is remembered in localStorage.

const STRINGS = {
  en: {
    "app.title": "ION Mentoring",
    "app.tagline": "Mentors who listen, explain, measure and plan",
    "lang.label": "Language",
    "nav.conversations": "Conversations",
    "nav.new": "New conversation",
    "nav.operator": "Operator page",
    "nav.chat": "Back to the chat",
    "nav.signout": "Sign out",
    "list.empty": "No conversations yet.",
    "list.more": "Show older conversations",
    "list.delete": "Delete",
    "list.delete_named": "Delete conversation “{title}”",
    "list.untitled": "Untitled conversation",
    "list.messages": "{n} messages",
    "confirm.title": "Delete this conversation?",
    "confirm.body": "“{title}” and every message, rating and copy of it will be erased. This cannot be undone.",
    "confirm.cancel": "Keep it",
    "confirm.delete": "Delete for good",
    "chat.empty": "Say hello, ask about code, or tell a mentor how your day went.",
    "chat.input_label": "Your message",
    "chat.placeholder": "Write to your mentor… (Enter to send, Shift+Enter for a new line)",
    "chat.send": "Send",
    "chat.stop": "Stop",
    "chat.you": "You",
    "chat.thinking": "{name} is writing…",
    "chat.stopped": "You stopped this answer; the part above was kept.",
    "chat.incomplete": "This answer was cut off.",
    "chat.why": "Why this mentor?",
    "chat.confidence": "confidence {value}",
    "chat.judged": "chosen by the routing judge",
    "mode.duo": "two mentors together",
    "mode.clarify": "a question first",
    "chat.quick_replies": "Quick replies",
    "chat.resonance": "Resonance key",
    "crisis.title": "You are not alone. Please reach out now:",
    "crisis.call": "Call {phone}",
    "feedback.label": "Was this answer helpful?",
    "feedback.up": "Helpful",
    "feedback.down": "Not helpful",
    "feedback.comment_label": "Tell us more (optional)",
    "feedback.send_comment": "Send comment",
    "feedback.thanks": "Thank you for your feedback.",
    "feedback.saved_comment": "Your comment was saved.",
    "err.rate_limited": "You are sending messages quickly. Please wait {seconds} seconds and try again.",
    "err.budget_exhausted": "Today's mentoring allowance is used up. It resets in {time}.",
    "err.unavailable": "The mentor cannot answer right now. Your message was kept; please try again in a moment.",
    "err.offline": "You are offline. Check your connection; your message has not been sent.",
    "err.signin": "Your session has ended. Please sign in again.",
    "err.not_found": "That conversation no longer exists.",
    "err.conflict": "Your previous message is still being answered. Please wait a moment.",
    "err.invalid": "The message could not be sent: {detail}",
    "err.blocked": "The mentor could not answer this message. Please rephrase it.",
    "err.generic": "Something went wrong (reference {id}). Please try again.",
    "err.stream": "The answer was interrupted: {detail}",
    "err.no_auth": "Sign-in is not configured for this page.",
    "status.offline": "Offline: messages will not be sent until you are back online.",
    "signin.title": "Sign in",
    "signin.email": "Email",
    "signin.password": "Password",
    "signin.submit": "Sign in",
    "signin.failed": "Sign-in failed: check your email and password.",
    "op.title": "Operator dashboard",
    "op.range": "Time range",
    "op.days": "Last {n} days",
    "op.refresh": "Refresh",
    "op.refused": "This page is for operators. Your account does not have the operator role.",
    "op.routing": "Routing distribution over time",
    "op.routing_desc": "Answered turns per day, by persona",
    "op.feedback": "Feedback per persona",
    "op.feedback_desc": "Ratings up and down (all time)",
    "op.feedback_keys": "Feedback per persona and resonance key",
    "op.nudges": "Learned routing nudges",
    "op.nudges_desc": "Score nudge per persona and resonance key (bound ±{bound}, at least {votes} votes)",
    "op.disagreements": "Routing judge disagreements",
    "op.disagreements_desc": "Local router → judge, in the selected range",
    "op.crises": "Crisis detections per day",
    "op.crises_desc": "Counts only: no message text is kept here",
    "op.no_data": "No data in this range yet.",
    "op.no_nudges": "No persona has enough votes on a resonance key for a nudge yet.",
    "op.more": "Load more",
    "op.col_when": "When",
    "op.col_local": "Local",
    "op.col_judge": "Judge",
    "op.col_need": "Main need",
    "op.col_message": "Message",
    "op.up": "up",
    "op.down": "down",
    "op.total": "{n} in total",
  },
  ko: {
    "app.title": "ION 멘토링",
    "app.tagline": "듣고, 설명하고, 재고, 계획하는 멘토들",
    "lang.label": "언어",
    "nav.conversations": "대화 목록",
    "nav.new": "새 대화",
    "nav.operator": "운영자 페이지",
    "nav.chat": "채팅으로 돌아가기",
    "nav.signout": "로그아웃",
    "list.empty": "아직 대화가 없어요.",
    "list.more": "이전 대화 더 보기",
    "list.delete": "삭제",
    "list.delete_named": "“{title}” 대화 삭제",
    "list.untitled": "제목 없는 대화",
    "list.messages": "메시지 {n}개",
    "confirm.title": "이 대화를 삭제할까요?",
    "confirm.body": "“{title}” 대화와 모든 메시지, 평가, 사본이 지워집니다. 되돌릴 수 없어요.",
    "confirm.cancel": "그대로 두기",
    "confirm.delete": "완전히 삭제",
    "chat.empty": "인사하거나, 코드에 대해 묻거나, 오늘 하루가 어땠는지 이야기해 보세요.",
    "chat.input_label": "메시지",
    "chat.placeholder": "멘토에게 메시지를 써 보세요… (Enter로 보내기, Shift+Enter로 줄바꿈)",
    "chat.send": "보내기",
    "chat.stop": "멈추기",
    "chat.you": "나",
    "chat.thinking": "{name}이(가) 답을 쓰는 중…",
    "chat.stopped": "답변을 멈췄어요. 위의 내용은 저장되었어요.",
    "chat.incomplete": "이 답변은 중간에 끊겼어요.",
    "chat.why": "왜 이 멘토인가요?",
    "chat.confidence": "확신도 {value}",
    "chat.judged": "라우팅 심판이 선택함",
    "mode.duo": "두 멘토가 함께",
    "mode.clarify": "먼저 질문",
    "chat.quick_replies": "빠른 답장",
    "chat.resonance": "공명 키",
    "crisis.title": "혼자가 아니에요. 지금 바로 연락해 주세요:",
    "crisis.call": "{phone}에 전화하기",
    "feedback.label": "이 답변이 도움이 되었나요?",
    "feedback.up": "도움이 됐어요",
    "feedback.down": "도움이 안 됐어요",
    "feedback.comment_label": "의견을 더 들려주세요 (선택)",
    "feedback.send_comment": "의견 보내기",
    "feedback.thanks": "의견 감사합니다.",
    "feedback.saved_comment": "의견이 저장되었어요.",
    "err.rate_limited": "메시지를 너무 빨리 보내고 있어요. {seconds}초 후에 다시 시도해 주세요.",
    "err.budget_exhausted": "오늘 사용할 수 있는 멘토링 양을 모두 썼어요. {time} 후에 다시 열려요.",
    "err.unavailable": "멘토가 지금은 답할 수 없어요. 메시지는 저장되었으니 잠시 후 다시 시도해 주세요.",
    "err.offline": "오프라인 상태예요. 연결을 확인해 주세요. 메시지는 보내지지 않았어요.",
    "err.signin": "로그인이 만료되었어요. 다시 로그인해 주세요.",
    "err.not_found": "그 대화는 더 이상 없어요.",
    "err.conflict": "이전 메시지에 아직 답하는 중이에요. 잠시만 기다려 주세요.",
    "err.invalid": "메시지를 보낼 수 없어요: {detail}",
    "err.blocked": "멘토가 이 메시지에는 답할 수 없어요. 다르게 표현해 주세요.",
    "err.generic": "문제가 생겼어요 (참조 번호 {id}). 다시 시도해 주세요.",
    "err.stream": "답변이 중단되었어요: {detail}",
    "err.no_auth": "이 페이지에는 로그인이 설정되어 있지 않아요.",
    "status.offline": "오프라인: 다시 연결될 때까지 메시지를 보낼 수 없어요.",
    "signin.title": "로그인",
    "signin.email": "이메일",
    "signin.password": "비밀번호",
    "signin.submit": "로그인",
    "signin.failed": "로그인에 실패했어요. 이메일과 비밀번호를 확인해 주세요.",
    "op.title": "운영자 대시보드",
    "op.range": "기간",
    "op.days": "최근 {n}일",
    "op.refresh": "새로고침",
    "op.refused": "운영자만 볼 수 있는 페이지예요. 이 계정에는 운영자 권한이 없어요.",
    "op.routing": "기간별 라우팅 분포",
    "op.routing_desc": "페르소나별 하루 응답 수",
    "op.feedback": "페르소나별 피드백",
    "op.feedback_desc": "좋아요와 싫어요 (전체 기간)",
    "op.feedback_keys": "페르소나 × 공명 키별 피드백",
    "op.nudges": "학습된 라우팅 보정값",
    "op.nudges_desc": "페르소나 × 공명 키별 점수 보정 (한도 ±{bound}, 최소 {votes}표)",
    "op.disagreements": "라우팅 심판과의 불일치",
    "op.disagreements_desc": "로컬 라우터 → 심판, 선택한 기간",
    "op.crises": "일별 위기 감지 수",
    "op.crises_desc": "개수만 표시: 메시지 내용은 여기에 저장되지 않아요",
    "op.no_data": "이 기간에는 아직 데이터가 없어요.",
    "op.no_nudges": "아직 보정값을 받을 만큼 투표를 받은 페르소나가 없어요.",
    "op.more": "더 불러오기",
    "op.col_when": "시각",
    "op.col_local": "로컬",
    "op.col_judge": "심판",
    "op.col_need": "주요 필요",
    "op.col_message": "메시지",
    "op.up": "좋아요",
    "op.down": "싫어요",
    "op.total": "총 {n}건",
  },
};

export const LANGUAGES = ["en", "ko"];
const STORAGE_KEY = "ion.lang";
let current = pickLanguage();

function pickLanguage() {
  let saved = null;
  try {
    saved = window.localStorage.getItem(STORAGE_KEY);
  } catch {
    saved = null; // storage disabled: fall back to the browser's language
  }
  if (LANGUAGES.includes(saved)) return saved;
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (LANGUAGES.includes(base)) return base;
  }
  return "en";
}

export function language() {
  return current;
}

export function setLanguage(lang) {
  if (!LANGUAGES.includes(lang)) return;
  current = lang;
  try {
    window.localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // not remembered; the choice still applies to this page
  }
  applyTranslations(document);
}

export function t(key, vars = {}) {
  const text = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

// Elements carry data-i18n (text), data-i18n-placeholder, data-i18n-label (aria-label).
export function applyTranslations(root) {
  document.documentElement.lang = current;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
  document.title = t(document.body.dataset.titleKey || "app.title");
  document.dispatchEvent(new CustomEvent("languagechange"));
}

export function bindLanguageSelect(select) {
  select.value = current;
  select.addEventListener("change", () => setLanguage(select.value));
}
