// The operator dashboard: routing, feedback, nudges, judge disagreements and crisis counts.
// Every number comes from an operator-only endpoint; a learner's token gets 403 from the
// server and this page says so.

import { ApiError, getJson } from "./api.js";
import { horizontalBars, legend, stackedColumns } from "./charts.js";
import { applyTranslations, bindLanguageSelect, language, t } from "./i18n.js";
import { colour, persona, setCatalog } from "./personas.js";

const $ = (id) => document.getElementById(id);
const UP = "#0f7a5a";
const DOWN = "#b42318";
const CRISIS = "#7a1a10";

let disagreementCursor = null;
let disagreements = [];
let lastData = null;

function rangeQuery() {
  const days = Number($("range").value);
  const today = new Date();
  const from = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - days + 1));
  return new URLSearchParams({ from: from.toISOString().slice(0, 10), to: today.toISOString().slice(0, 10) });
}

function plot(id, ...nodes) {
  const box = $(id).querySelector(".plot");
  box.replaceChildren(...nodes.filter(Boolean));
}

function noData(key = "op.no_data") {
  const p = document.createElement("p");
  p.className = "muted";
  p.textContent = t(key);
  return p;
}

function keyLabel(key) {
  return `${key.tone} · ${key.pace} · ${key.intent}`;
}

function personaLabel(id) {
  const who = persona(id);
  return who.name_ko ? `${who.name} (${who.name_ko})` : who.name;
}

function drawRouting(daily) {
  const ids = Object.keys(daily.turns);
  const series = ids.map((id) => ({ label: personaLabel(id), colour: colour(id), values: daily.turns[id] }));
  const total = series.reduce((sum, s) => sum + s.values.reduce((a, b) => a + b, 0), 0);
  if (!total) return plot("chart-routing", noData());
  const labels = daily.days.map((d) => d.slice(5));
  plot("chart-routing",
    stackedColumns({ labels, series, label: `${t("op.routing")}: ${t("op.total", { n: total })}` }),
    legend(series));
}

function drawCrises(daily) {
  const total = daily.crises.reduce((a, b) => a + b, 0);
  const labels = daily.days.map((d) => d.slice(5));
  plot("chart-crises",
    stackedColumns({ labels, series: [{ label: t("op.crises"), colour: CRISIS, values: daily.crises }], label: `${t("op.crises")}: ${t("op.total", { n: total })}`, width: 420, height: 220 }));
}

function drawFeedback(stats) {
  const rows = Object.entries(stats.totals).map(([id, total]) => ({
    label: personaLabel(id),
    values: [
      { label: t("op.up"), value: total.ups, colour: UP },
      { label: t("op.down"), value: total.downs, colour: DOWN },
    ],
  }));
  const votes = rows.reduce((sum, r) => sum + r.values[0].value + r.values[1].value, 0);
  if (!votes) return plot("chart-feedback", noData());
  plot("chart-feedback",
    horizontalBars({ rows, label: `${t("op.feedback")}: ${t("op.total", { n: votes })}`, width: 420, labelW: 140 }),
    legend([{ label: t("op.up"), colour: UP }, { label: t("op.down"), colour: DOWN }]));
}

function drawFeedbackKeys(stats) {
  const rated = stats.stats.filter((s) => s.ups || s.downs)
    .sort((a, b) => b.ups + b.downs - (a.ups + a.downs)).slice(0, 20);
  if (!rated.length) return plot("chart-feedback-keys", noData());
  const rows = rated.map((s) => ({
    label: `${persona(s.persona).name} · ${keyLabel(s.resonance_key)}`,
    values: [
      { label: t("op.up"), value: s.ups, colour: UP },
      { label: t("op.down"), value: s.downs, colour: DOWN },
    ],
  }));
  plot("chart-feedback-keys", horizontalBars({ rows, label: t("op.feedback_keys") }),
    legend([{ label: t("op.up"), colour: UP }, { label: t("op.down"), colour: DOWN }]));
}

function drawNudges(stats) {
  $("nudges-desc").textContent = t("op.nudges_desc", { bound: stats.bound, votes: stats.min_votes });
  const nudged = stats.stats.filter((s) => s.adjustment !== 0)
    .sort((a, b) => Math.abs(b.adjustment) - Math.abs(a.adjustment)).slice(0, 20);
  if (!nudged.length) return plot("chart-nudges", noData("op.no_nudges"));
  const rows = nudged.map((s) => ({
    label: `${persona(s.persona).name} · ${keyLabel(s.resonance_key)}`,
    values: [{ label: "nudge", value: s.adjustment, colour: s.adjustment > 0 ? UP : DOWN }],
  }));
  plot("chart-nudges", horizontalBars({ rows, label: t("op.nudges"), diverging: true, bound: stats.bound }));
}

function drawDisagreements() {
  const pairs = new Map();
  for (const d of disagreements) {
    const key = `${persona(d.local_persona).name} → ${persona(d.judge_persona).name}`;
    pairs.set(key, (pairs.get(key) || 0) + 1);
  }
  const rows = [...pairs.entries()].sort((a, b) => b[1] - a[1])
    .map(([label, value]) => ({ label, values: [{ label: "n", value, colour: "#2563a8" }] }));
  plot("chart-disagreements", rows.length ? horizontalBars({ rows, label: t("op.disagreements") }) : noData());
  const body = $("disagreement-table").querySelector("tbody");
  body.replaceChildren(...disagreements.map((d) => {
    const tr = document.createElement("tr");
    const when = new Date(d.created_at).toLocaleString(language() === "ko" ? "ko-KR" : "en-GB");
    for (const text of [when, persona(d.local_persona).name, persona(d.judge_persona).name, d.main_need, d.message]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  }));
  $("disagreement-table").hidden = !disagreements.length;
  $("more-disagreements").hidden = !disagreementCursor;
}

async function loadDisagreements(reset) {
  const query = rangeQuery();
  query.set("limit", "50");
  if (!reset && disagreementCursor) query.set("cursor", disagreementCursor);
  const page = await getJson(`/v1/operator/disagreements?${query}`, { operator: true });
  disagreements = reset ? page.disagreements : disagreements.concat(page.disagreements);
  disagreementCursor = page.next_cursor;
}

function draw() {
  if (!lastData) return;
  const { stats, daily } = lastData;
  drawRouting(daily);
  drawCrises(daily);
  drawFeedback(stats);
  drawFeedbackKeys(stats);
  drawNudges(stats);
  drawDisagreements();
}

function showError(exc) {
  const box = $("error");
  box.hidden = false;
  if (exc instanceof ApiError && exc.status === 403) box.textContent = t("op.refused");
  else box.textContent = exc instanceof ApiError ? exc.human : t("err.generic", { id: "-" });
  $("charts").hidden = true;
}

async function load() {
  $("error").hidden = true;
  try {
    const catalog = await getJson("/v1/personas", { operator: true });
    setCatalog(catalog.personas);
    const [stats, daily] = await Promise.all([
      getJson("/v1/routing/stats", { operator: true }),
      getJson(`/v1/operator/daily?${rangeQuery()}`, { operator: true }),
    ]);
    await loadDisagreements(true);
    lastData = { stats, daily };
    $("charts").hidden = false;
    draw();
    document.body.dataset.loaded = "true";
  } catch (exc) {
    showError(exc);
    document.body.dataset.loaded = "refused";
  }
}

function labelRanges() {
  for (const option of $("range").options) option.textContent = t("op.days", { n: option.value });
}

function init() {
  applyTranslations(document);
  bindLanguageSelect($("lang-select"));
  labelRanges();
  document.addEventListener("languagechange", () => {
    labelRanges();
    draw();
  });
  $("range").addEventListener("change", load);
  $("refresh").addEventListener("click", load);
  $("more-disagreements").addEventListener("click", async () => {
    try {
      await loadDisagreements(false);
      drawDisagreements();
    } catch (exc) {
      showError(exc);
    }
  });
  load();
}

init();
