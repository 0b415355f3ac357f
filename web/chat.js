// The learner chat: streamed answers with their mentor, conversations, feedback.

import {
  ApiError, getJson, request, signIn, signInRequired, signOut, streamChat, loadConfig,
} from "./api.js";
import { applyTranslations, bindLanguageSelect, language, t } from "./i18n.js";
import { colour, persona, setCatalog } from "./personas.js";

const $ = (id) => document.getElementById(id);
let pageSize = 20; // config.json's page_size (ION_PAGE_SIZE) when it names one

const state = {
  conversationId: null,
  nextCursor: null,
  controller: null, // the AbortController of the answer being streamed
  conversations: new Map(),
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function scrollToEnd() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

// --- messages ----------------------------------------------------------------------------

function renderUser(text) {
  $("chat-empty").hidden = true;
  const node = el("article", { class: "msg user" },
    el("h3", { class: "who", text: t("chat.you") }),
    el("div", { class: "text", text }));
  $("messages").append(node);
  scrollToEnd();
  return node;
}

function avatar(id) {
  const who = persona(id);
  const badge = el("span", { class: "avatar", "aria-hidden": "true", text: (who.name || "?").slice(0, 1) });
  badge.style.setProperty("background-color", colour(id));
  return badge;
}

function personaHeader(ids, mode) {
  const header = el("h3", { class: "who" });
  ids.forEach((id, index) => {
    const who = persona(id);
    if (index > 0) header.append(el("span", { class: "plus", text: " + " }));
    header.append(avatar(id), el("span", { class: "persona-name", text: who.name }));
    if (who.name_ko) header.append(el("span", { class: "persona-name-ko", lang: "ko", text: who.name_ko }));
    if (who.role && ids.length === 1) header.append(el("span", { class: "role", text: who.role }));
  });
  // Duo answers and clarifying questions say so; an ordinary (single) answer needs no badge.
  if (mode && mode !== "single") header.append(el("span", { class: "mode", text: t(`mode.${mode}`) }));
  return header;
}

function resonanceChips(key) {
  if (!key) return null;
  const list = el("ul", { class: "chips", "aria-label": t("chat.resonance") });
  for (const part of ["tone", "pace", "intent"]) {
    if (key[part]) list.append(el("li", { class: `chip chip-${part}`, title: part, text: key[part] }));
  }
  return list;
}

function crisisBox(resources) {
  const box = el("div", { class: "crisis", role: "alert" },
    el("strong", { text: t("crisis.title") }));
  const list = el("ul");
  for (const r of resources || []) {
    const item = el("li", {}, el("span", { class: "resource-name", text: r.name }));
    if (r.phone) {
      item.append(" ", el("a", {
        href: `tel:${r.phone.replace(/[^0-9+]/g, "")}`, class: "call",
        "aria-label": t("crisis.call", { phone: r.phone }), text: r.phone,
      }));
    }
    if (r.url) item.append(" ", el("a", { href: r.url, rel: "noopener noreferrer", target: "_blank", text: r.url }));
    list.append(item);
  }
  if (list.childElementCount) box.append(list);
  return box;
}

function whyBox(routing) {
  if (!routing || !routing.reason) return null;
  const details = el("details", { class: "why" },
    el("summary", { text: t("chat.why") }),
    el("p", { text: routing.reason }));
  const facts = [t("chat.confidence", { value: Number(routing.confidence).toFixed(2) })];
  if (routing.judged) facts.push(t("chat.judged"));
  details.append(el("p", { class: "muted", text: facts.join(" · ") }));
  return details;
}

function quickReplies(items) {
  const labels = (Array.isArray(items) ? items : [])
    .map((item) => (typeof item === "string" ? item : item && (item.text || item.label)))
    .filter((text) => typeof text === "string" && text.trim());
  if (!labels.length) return null;
  const group = el("div", { class: "quick-replies", role: "group", "aria-label": t("chat.quick_replies") });
  for (const label of labels) {
    const button = el("button", { type: "button", class: "quick-reply", text: label });
    button.addEventListener("click", () => send(label));
    group.append(button);
  }
  return group;
}

function feedbackBox(conversationId, messageId) {
  const box = el("div", { class: "feedback", role: "group", "aria-label": t("feedback.label") });
  const up = el("button", { type: "button", class: "thumb up", "aria-pressed": "false", text: `▲ ${t("feedback.up")}` });
  const down = el("button", { type: "button", class: "thumb down", "aria-pressed": "false", text: `▼ ${t("feedback.down")}` });
  const status = el("p", { class: "feedback-status", role: "status" });
  const textarea = el("textarea", { maxlength: "1000", rows: "2" });
  const form = el("form", { class: "comment", hidden: true },
    el("label", {}, el("span", { text: t("feedback.comment_label") }), textarea),
    el("button", { type: "submit", text: t("feedback.send_comment") }));
  let rating = null;

  async function rate(value, comment) {
    const body = { rating: value };
    if (comment) body.comment = comment;
    await request(`/v1/conversations/${conversationId}/messages/${messageId}/feedback`, { method: "POST", body });
  }

  for (const [button, value] of [[up, "up"], [down, "down"]]) {
    button.addEventListener("click", async () => {
      try {
        await rate(value);
        rating = value;
        up.setAttribute("aria-pressed", String(value === "up"));
        down.setAttribute("aria-pressed", String(value === "down"));
        status.textContent = t("feedback.thanks");
        form.hidden = false;
      } catch (exc) {
        status.textContent = humanError(exc);
      }
    });
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const comment = textarea.value.trim();
    if (!rating || !comment) return;
    try {
      await rate(rating, comment);
      status.textContent = t("feedback.saved_comment");
      form.hidden = true;
    } catch (exc) {
      status.textContent = humanError(exc);
    }
  });
  box.append(up, down, status, form);
  return box;
}

// One assistant answer, filled as the stream arrives.
class AnswerView {
  constructor() {
    this.node = el("article", { class: "msg assistant", "aria-busy": "true" });
    this.header = el("h3", { class: "who" });
    this.textNode = el("div", { class: "text" });
    this.note = el("p", { class: "note", hidden: true });
    this.node.append(this.header, this.textNode, this.note);
    this.text = "";
    this.meta = null;
    $("messages").append(this.node);
    scrollToEnd();
  }

  setMeta(meta) {
    this.meta = meta;
    // A duo answer is written by the personas it lists; a clarifying question by the
    // primary alone (its `personas` are what the quick replies stand for).
    const ids = meta.mode === "duo" && Array.isArray(meta.personas) && meta.personas.length
      ? meta.personas.map((p) => p.id || p)
      : [meta.persona.id];
    this.node.dataset.persona = ids[0];
    this.node.style.setProperty("--persona-colour", colour(ids[0]));
    this.header.replaceWith((this.header = personaHeader(ids, meta.mode)));
    const chips = resonanceChips(meta.resonance_key);
    if (chips) this.header.after(chips);
    if (meta.safety && meta.safety.crisis) (chips || this.header).after(crisisBox(meta.safety.resources));
    this.textNode.classList.add("typing");
    this.textNode.dataset.placeholder = t("chat.thinking", { name: persona(ids[0]).name });
  }

  append(text) {
    this.text += text;
    this.textNode.textContent = this.text;
    scrollToEnd();
  }

  finish({ stopped = false, incomplete = false, extra = {} } = {}) {
    this.node.removeAttribute("aria-busy");
    this.textNode.classList.remove("typing");
    if (stopped || incomplete) {
      this.note.hidden = false;
      this.note.textContent = stopped ? t("chat.stopped") : t("chat.incomplete");
      this.node.classList.add(stopped ? "stopped" : "incomplete");
    }
    if (!this.meta) return;
    const why = whyBox(this.meta.routing);
    if (why) this.node.append(why);
    const replies = quickReplies(extra.quick_replies || this.meta.quick_replies);
    if (replies) this.node.append(replies);
    if (!stopped && !incomplete) {
      this.node.append(feedbackBox(this.meta.conversation_id, this.meta.message_id));
    }
  }
}

function renderStoredAssistant(conversationId, message, key) {
  const view = new AnswerView();
  view.setMeta({
    conversation_id: conversationId,
    message_id: message.message_id,
    persona: { id: message.persona },
    personas: message.personas,
    mode: message.mode,
    resonance_key: message.resonance_key || key,
    safety: { crisis: Boolean(message.crisis), resources: message.resources || [] },
    quick_replies: message.quick_replies,
  });
  view.append(message.text);
  view.finish({ incomplete: message.status === "incomplete" });
}

function humanError(exc) {
  if (exc instanceof ApiError) return exc.human;
  return t("err.generic", { id: "-" });
}

// --- sending -----------------------------------------------------------------------------

function setStreaming(on) {
  $("send").hidden = on;
  $("stop").hidden = !on;
  $("message-input").readOnly = on;
  if (!on) $("message-input").focus();
}

async function send(text) {
  if (state.controller || !text.trim()) return;
  showError("");
  const input = $("message-input");
  input.value = "";
  const userBubble = renderUser(text);
  const view = new AnswerView();
  const controller = new AbortController();
  state.controller = controller;
  setStreaming(true);
  let finished = false;
  try {
    const body = { message: text };
    if (state.conversationId) body.conversation_id = state.conversationId;
    await streamChat(body, {
      signal: controller.signal,
      onEvent(name, data) {
        if (name === "meta") {
          state.conversationId = data.conversation_id;
          view.setMeta(data);
        } else if (name === "delta") {
          view.append(data.text || "");
        } else if (name === "done") {
          finished = true;
          view.finish({ extra: data });
        } else if (name === "error") {
          finished = true;
          view.finish({ incomplete: true });
          const error = data.error || {};
          const status = error.code === "llm_unavailable" || error.code === "dependency_unavailable" ? 503 : 500;
          showError(new ApiError(status, error.code, error.message, { requestId: data.request_id }).human);
        }
      },
    });
    if (!finished) view.finish({ incomplete: true });
  } catch (exc) {
    if (exc && exc.name === "AbortError") {
      view.finish({ stopped: true });
    } else {
      const kept = exc instanceof ApiError && exc.body && exc.body.conversation_id;
      if (kept) state.conversationId = exc.body.conversation_id; // the message was stored there
      if (view.meta) {
        view.finish({ incomplete: true });
      } else {
        view.node.remove();
        if (!kept) userBubble.remove(); // refused before anything was stored
        input.value = text; // nothing is lost: the learner can send it again
      }
      showError(humanError(exc));
    }
  } finally {
    state.controller = null;
    setStreaming(false);
    loadConversations({ reset: true }).catch(() => {});
  }
}

function stop() {
  if (state.controller) state.controller.abort();
}

// --- conversations -----------------------------------------------------------------------

function formatDate(iso) {
  const locale = language() === "ko" ? "ko-KR" : "en-GB";
  return new Date(iso).toLocaleString(locale, { dateStyle: "medium", timeStyle: "short" });
}

function conversationItem(c) {
  const title = c.title || t("list.untitled");
  const open = el("button", {
    type: "button", class: "open",
    "aria-current": c.conversation_id === state.conversationId ? "true" : null,
  },
  el("span", { class: "title", text: title }),
  el("span", { class: "meta", text: `${formatDate(c.updated_at)} · ${t("list.messages", { n: c.message_count })}` }));
  open.addEventListener("click", () => openConversation(c.conversation_id));
  const remove = el("button", {
    type: "button", class: "delete", "aria-label": t("list.delete_named", { title }), text: t("list.delete"),
  });
  remove.addEventListener("click", () => confirmDelete(c));
  if (c.current_persona) open.prepend(avatar(c.current_persona));
  return el("li", { "data-id": c.conversation_id }, open, remove);
}

async function loadConversations({ reset = false } = {}) {
  const cursor = reset ? null : state.nextCursor;
  const query = new URLSearchParams({ limit: String(pageSize) });
  if (cursor) query.set("cursor", cursor);
  const page = await getJson(`/v1/conversations?${query}`);
  const list = $("conversation-list");
  if (reset) {
    list.replaceChildren();
    state.conversations.clear();
  }
  for (const c of page.conversations) {
    state.conversations.set(c.conversation_id, c);
    list.append(conversationItem(c));
  }
  state.nextCursor = page.next_cursor;
  $("list-more").hidden = !page.next_cursor;
  $("list-empty").hidden = list.childElementCount > 0;
}

function clearChat() {
  const box = $("messages");
  box.replaceChildren($("chat-empty") || el("p", { id: "chat-empty", class: "muted center", text: t("chat.empty") }));
  $("chat-empty").hidden = false;
}

function markCurrent() {
  for (const item of $("conversation-list").children) {
    const open = item.querySelector(".open");
    if (item.dataset.id === state.conversationId) open.setAttribute("aria-current", "true");
    else open.removeAttribute("aria-current");
  }
}

async function openConversation(id) {
  if (state.controller) return;
  showError("");
  try {
    const conversation = await getJson(`/v1/conversations/${id}`);
    state.conversationId = id;
    clearChat();
    let key = null;
    for (const message of conversation.messages) {
      if (message.role === "user") {
        renderUser(message.text);
        key = message.resonance_key;
      } else {
        renderStoredAssistant(id, message, key);
      }
    }
    markCurrent();
    closeSidebarOnPhone();
  } catch (exc) {
    showError(humanError(exc));
  }
}

function confirmDelete(conversation) {
  const dialog = $("confirm-delete");
  $("confirm-body").textContent = t("confirm.body", { title: conversation.title || t("list.untitled") });
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "delete") return;
    try {
      await request(`/v1/conversations/${conversation.conversation_id}`, { method: "DELETE" });
      if (state.conversationId === conversation.conversation_id) newConversation();
      await loadConversations({ reset: true });
    } catch (exc) {
      showError(humanError(exc));
    }
  };
  dialog.showModal();
  $("confirm-cancel").focus();
}

function newConversation() {
  if (state.controller) return;
  state.conversationId = null;
  clearChat();
  markCurrent();
  showError("");
  closeSidebarOnPhone();
  $("message-input").focus();
}

// --- page --------------------------------------------------------------------------------

function closeSidebarOnPhone() {
  document.body.classList.remove("sidebar-open");
  $("toggle-list").setAttribute("aria-expanded", "false");
}

function updateOnline() {
  $("offline-banner").hidden = navigator.onLine;
}

async function start() {
  $("signin").hidden = true;
  $("composer").hidden = false;
  const catalog = await getJson("/v1/personas");
  setCatalog(catalog.personas);
  await loadConversations({ reset: true });
}

async function init() {
  applyTranslations(document);
  bindLanguageSelect($("lang-select"));
  document.addEventListener("languagechange", () => {
    if (state.conversations.size) {
      $("conversation-list").replaceChildren(...[...state.conversations.values()].map(conversationItem));
    }
  });
  window.addEventListener("online", updateOnline);
  window.addEventListener("offline", updateOnline);
  updateOnline();

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    send($("message-input").value);
  });
  $("message-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send($("message-input").value);
    } else if (event.key === "Escape") {
      stop();
    }
  });
  $("stop").addEventListener("click", stop);
  $("new-conversation").addEventListener("click", newConversation);
  $("list-more").addEventListener("click", () => loadConversations().catch((exc) => showError(humanError(exc))));
  $("toggle-list").addEventListener("click", () => {
    const open = document.body.classList.toggle("sidebar-open");
    $("toggle-list").setAttribute("aria-expanded", String(open));
  });
  $("sign-out").addEventListener("click", () => {
    signOut();
    window.location.reload();
  });
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    try {
      await signIn(form.email.value, form.password.value);
      $("signin-error").hidden = true;
      await start();
    } catch (exc) {
      $("signin-error").hidden = false;
      $("signin-error").textContent = humanError(exc);
    }
  });

  try {
    const config = await loadConfig();
    if (Number.isInteger(config.page_size)) pageSize = config.page_size;
    $("sign-out").hidden = (config.auth || {}).mode !== "firebase";
    if (await signInRequired()) {
      $("signin").hidden = false;
      $("composer").hidden = true;
      return;
    }
    await start();
  } catch (exc) {
    showError(humanError(exc));
  }
}

init();
