// The ops dashboard: sending controls with their audit trail, activity charts, workflows, quotas,
// guardrails and reps. Every request goes through api.js; every change asks for confirmation or is
// an explicit "Save".
import { api, mountSignIn, el, announce, showError, clearError, confirmAction, openDialog, formatDate,
         percent } from "./api.js";
import { barChart, hbarChart } from "./chart.js";

const STATES = ["RECEIVED", "DRAFTING", "DRAFTED", "GATED", "SENDING", "SENT", "DRAFT_SAVED", "BLOCKED", "FAILED", "REPLIED"];
const STATE_LABELS = { RECEIVED: "Received", DRAFTING: "Drafting", DRAFTED: "Drafted", GATED: "Gated", SENDING: "Sending",
  SENT: "Sent", DRAFT_SAVED: "Left as draft", BLOCKED: "Blocked", FAILED: "Failed", REPLIED: "Replied" };
const CATEGORY_LABELS = { kill_switch: "Kill switch", circuit_breaker: "Circuit breaker", quota: "Quota", pii: "Personal data",
  guardrails: "Guardrails", unsupported_content: "Unsupported links or claims", voice: "Voice", risk: "Risk",
  mailbox: "Mailbox", recipient: "Recipient", other: "Other", unspecified: "No reason given" };
const PAGE_SIZE = 25;

const $ = (id) => document.getElementById(id);
let flags = null;
let cursors = [null]; // cursors[i] opens page i; the last one is the current page's
let reps = [];

// --- flags --------------------------------------------------------------------------------------

function renderFlags(view) {
  flags = view.flags;
  const sending = flags.send_mode === "SEND_ALLOWED";
  $("send-mode").textContent = sending ? "Sending allowed" : "Drafts only";
  $("send-mode").className = `badge ${sending ? "on-ok" : "pending"}`;
  $("toggle-send-mode").textContent = sending ? "Switch to drafts only" : "Allow sending";
  $("kill-state").textContent = flags.kill_switch ? "ON — nothing is sent" : "Off";
  $("kill-state").className = `badge ${flags.kill_switch ? "danger" : "on-ok"}`;
  $("toggle-kill").textContent = flags.kill_switch ? "Turn kill switch off" : "Turn kill switch on";
  $("toggle-kill").className = flags.kill_switch ? "secondary" : "danger";
  $("flags-updated").textContent = flags.updated_by ? `Last changed by ${flags.updated_by}, ${formatDate(flags.updated_at)}.` : "";
  renderAudit(view.audit);
}

function shown(value) {
  if (value === null || value === undefined) return "—";
  if (Array.isArray(value)) return value.length ? value.join(", ") : "(none)";
  return String(value);
}

function renderAudit(entries) {
  const body = $("audit").querySelector("tbody");
  body.replaceChildren(...entries.map((entry) => el("tr", {},
    el("td", { "data-label": "When" }, formatDate(entry.at)),
    el("td", { "data-label": "Who" }, entry.actor),
    el("td", { "data-label": "Setting" }, entry.key),
    el("td", { "data-label": "From" }, shown(entry.old)),
    el("td", { "data-label": "To" }, shown(entry.new)))));
  if (!entries.length) body.append(el("tr", {}, el("td", { colspan: "5" }, "No changes recorded yet.")));
}

async function loadFlags() {
  const [view, audit] = await Promise.all([api("/admin/flags"), api("/admin/flags/audit?limit=50")]);
  renderFlags({ flags: view.flags, audit: audit.audit });
}

async function changeFlag(change, question) {
  if (!(await confirmAction(question))) return;
  try {
    const view = await api("/admin/flags", { method: "PUT", body: change });
    const audit = await api("/admin/flags/audit?limit=50");
    renderFlags({ flags: view.flags, audit: audit.audit });
    announce(`Saved. Send mode ${view.flags.send_mode}, kill switch ${view.flags.kill_switch ? "on" : "off"}.`);
  } catch (err) {
    showError(err);
  }
}

function toggleKill() {
  const on = !flags.kill_switch;
  changeFlag({ kill_switch: on }, on
    ? { title: "Turn the kill switch on?", message: "Nothing will be sent from any mailbox until it is turned off again, including sends already scheduled.", confirmLabel: "Turn kill switch on", danger: true }
    : { title: "Turn the kill switch off?", message: "Sending resumes according to the send mode and the gate's decisions.", confirmLabel: "Turn kill switch off" });
}

function toggleSendMode() {
  const allow = flags.send_mode !== "SEND_ALLOWED";
  changeFlag({ send_mode: allow ? "SEND_ALLOWED" : "DRAFT_ONLY" }, allow
    ? { title: "Allow sending?", message: "Drafts the gate approves will be sent from reps' Gmail without review.", confirmLabel: "Allow sending", danger: true }
    : { title: "Switch to drafts only?", message: "Every email will be left as a Gmail draft for its rep to review.", confirmLabel: "Drafts only" });
}

// --- stats --------------------------------------------------------------------------------------

function cards(list, entries) {
  list.replaceChildren(...entries.map(([label, value]) =>
    el("li", {}, el("span", { class: "value" }, String(value)), el("span", { class: "label" }, label))));
}

async function loadStats() {
  const stats = await api("/admin/stats");
  cards($("today-cards"), STATES.map((s) => [STATE_LABELS[s], stats.states.today[s] || 0]));
  const totals = { sent: 0, drafted: 0, blocked: 0, failed: 0, replied: 0 };
  for (const day of stats.daily) for (const key of Object.keys(totals)) totals[key] += day[key] || 0;
  cards($("week-cards"), [["Sent", totals.sent], ["Left as draft", totals.drafted], ["Blocked", totals.blocked], ["Failed", totals.failed], ["Replied", totals.replied]]);
  const latency = stats.latency || {};
  $("stats-note").textContent = `Days are UTC days. Median lead to draft: ${seconds(latency.lead_to_draft_seconds)}; lead to decision: ${seconds(latency.lead_to_decision_seconds)}. Sends today: ${stats.quota.global.used_today} of ${stats.quota.global.per_day}.`;
  const days = stats.daily.map((d) => d.day.slice(5));
  barChart($("daily-chart"), { title: "Outcomes per day", categories: days, series: [
    { name: "Sent", values: stats.daily.map((d) => d.sent), className: "sent" },
    { name: "Drafted", values: stats.daily.map((d) => d.drafted), className: "drafted" },
    { name: "Blocked", values: stats.daily.map((d) => d.blocked), className: "blocked" },
  ] });
  const reasons = stats.block_reasons;
  if (!reasons.categories.length) $("reasons-chart").replaceChildren(el("p", { class: "muted" }, "No drafts were blocked in the last 7 days."));
  else hbarChart($("reasons-chart"), { title: "Blocked drafts by reason", rows: reasons.categories.map((c) => ({ label: CATEGORY_LABELS[c.category] || c.category, value: c.drafts, className: "blocked" })) });
  $("top-reasons").replaceChildren(...reasons.top_reasons.map((r) => el("li", {}, `${r.reason} `, el("span", { class: "muted" }, `(${r.drafts})`))));
}

function seconds(value) {
  if (value === null || value === undefined) return "none yet";
  return value < 120 ? `${Math.round(value)} s` : `${Math.round(value / 60)} min`;
}

// --- workflows ----------------------------------------------------------------------------------

async function loadWorkflows() {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if ($("wf-state").value) params.set("state", $("wf-state").value);
  if ($("wf-rep").value) params.set("rep_id", $("wf-rep").value);
  if ($("wf-q").value.trim()) params.set("q", $("wf-q").value.trim());
  const cursor = cursors[cursors.length - 1];
  if (cursor) params.set("cursor", cursor);
  const page = await api(`/admin/workflows?${params}`);
  const body = $("workflows").querySelector("tbody");
  body.replaceChildren(...page.workflows.map((wf) => {
    const open = el("button", { type: "button", class: "secondary", "aria-label": `Open workflow of ${wf.lead_email || wf.id}` }, "Open");
    open.addEventListener("click", () => openWorkflow(wf.id, open));
    return el("tr", { dataset: { id: wf.id } },
      el("td", { "data-label": "Created" }, formatDate(wf.created_at)),
      el("td", { "data-label": "Lead" }, wf.lead_email || wf.contact_id || "—"),
      el("td", { "data-label": "Rep" }, wf.rep || "—"),
      el("td", { "data-label": "State" }, el("span", { class: `badge ${wf.state}` }, STATE_LABELS[wf.state] || wf.state)),
      el("td", { "data-label": "Decision" }, wf.decision || "—"),
      el("td", { "data-label": "Voice", class: "num" }, percent(wf.voice_score)),
      el("td", { "data-label": "" }, open));
  }));
  if (!page.workflows.length) body.append(el("tr", {}, el("td", { colspan: "7" }, "No workflows match.")));
  $("wf-prev").disabled = cursors.length <= 1;
  $("wf-next").disabled = !page.next_cursor;
  $("wf-next").dataset.cursor = page.next_cursor || "";
  $("wf-page").textContent = `Page ${cursors.length}`;
}

function reasonText(reason) {
  if (typeof reason === "string") return reason;
  if (reason && typeof reason === "object") return reason.message || reason.text || reason.reason || reason.code || JSON.stringify(reason);
  return String(reason);
}

async function openWorkflow(id, opener) {
  const dialog = $("workflow-dialog");
  const box = $("wf-detail");
  let detail;
  try {
    detail = await api(`/admin/workflows/${encodeURIComponent(id)}`);
  } catch (err) {
    showError(err);
    return;
  }
  const wf = detail.workflow;
  const draft = detail.draft;
  const events = (detail.timeline && detail.timeline.events) || [];
  const errors = (detail.timeline && detail.timeline.errors) || [];
  const links = detail.links || {};
  $("wf-detail-title").textContent = `Workflow for ${wf.lead_email || wf.contact_id || wf.id}`;
  box.replaceChildren(
    el("p", {}, el("span", { class: `badge ${wf.state}` }, STATE_LABELS[wf.state] || wf.state),
      ` Rep: ${wf.rep || "none assigned"}. Received ${formatDate(wf.created_at)}.`,
      wf.scheduled_send_at ? ` Send scheduled for ${formatDate(wf.scheduled_send_at)}.` : ""),
    el("p", {},
      links.hubspot_contact ? el("a", { href: links.hubspot_contact, target: "_blank", rel: "noopener noreferrer" }, "HubSpot contact") : el("span", { class: "muted" }, "No HubSpot contact link"),
      " · ",
      links.gmail ? el("a", { href: links.gmail, target: "_blank", rel: "noopener noreferrer" }, "Gmail message") : el("span", { class: "muted" }, "No Gmail message yet")),
    el("h3", {}, "Gate decision"),
    draft && draft.decision
      ? el("div", { id: "wf-gate" },
          el("p", {}, el("strong", {}, draft.decision), ` — voice score ${percent(draft.voice_score)}, risk ${percent(draft.risk_score)}.`),
          el("ul", { class: "reasons", id: "wf-reasons" }, (draft.reasons || []).map((r) => el("li", {}, reasonText(r)))))
      : el("p", { class: "muted" }, "No decision yet."),
    el("h3", {}, "Draft"),
    draft
      ? el("div", {}, el("p", {}, el("strong", {}, "Subject: "), draft.subject), el("pre", { class: "draft" }, draft.body),
          el("p", { class: "muted" }, `Written by ${draft.model}; voice score ${percent(draft.voice_score)}.`))
      : el("p", { class: "muted" }, "No draft yet."),
    el("h3", {}, "Timeline"),
    events.length
      ? el("ol", { class: "timeline" }, events.map((e) => el("li", {},
          el("strong", {}, `${e.from_state ? (STATE_LABELS[e.from_state] || e.from_state) + " → " : ""}${STATE_LABELS[e.to_state] || e.to_state}`),
          ` ${formatDate(e.at)} by ${e.actor}`, e.reason ? el("div", { class: "muted" }, e.reason) : null)))
      : el("p", { class: "muted" }, "No steps recorded."),
    errors.length ? el("h3", {}, "Errors") : null,
    errors.length ? el("ul", {}, errors.map((e) => el("li", {}, `${formatDate(e.at)} ${e.step}: ${e.message} (${e.retryable ? "retried" : "permanent"}, attempt ${e.attempt})`))) : null);
  await openDialog(dialog, opener);
  // The table may have been redrawn while the dialog was open: return focus to the same row's button.
  if (!opener.isConnected) {
    const again = $("workflows").querySelector(`tr[data-id="${CSS.escape(id)}"] button`);
    if (again) again.focus();
  }
}

// --- quotas, guardrails, reps -------------------------------------------------------------------

// The global cap bounds every rep's sends together: the brake ops reach for before the kill switch.
function globalQuotaForm(cap) {
  const day = el("input", { type: "number", id: "q-global-day", min: "0", max: "10000000", step: "1", value: String(cap.per_day) });
  const form = el("form", { class: "quota global", novalidate: true },
    el("h3", {}, "All reps together"),
    el("p", { class: "muted" }, `Today ${cap.used_today} of ${cap.per_day} sends (UTC day ${cap.day}).`),
    el("div", { class: "row" },
      el("div", { class: "field" }, el("label", { for: day.id }, "Global cap per day"), day),
      el("button", { type: "submit" }, "Save global cap")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    try {
      await api("/admin/quotas/global", { method: "PUT", body: { per_day: Number(day.value) } });
      announce("Global cap saved.");
      await Promise.all([loadQuotas(), loadFlags(), loadStats()]);
    } catch (err) {
      showError(err);
    }
  });
  return form;
}

async function loadQuotas() {
  const box = $("quotas");
  const [cap, views] = await Promise.all([
    api("/admin/quotas/global"),
    Promise.all(reps.map((rep) => api(`/admin/quotas/${encodeURIComponent(rep.id)}`))),
  ]);
  box.replaceChildren(globalQuotaForm(cap), ...views.map((q) => {
    const slug = q.rep_id.slice(0, 8);
    const day = el("input", { type: "number", id: `q-day-${slug}`, min: "0", max: "2000", step: "1", value: String(q.limits.per_day) });
    const week = el("input", { type: "number", id: `q-week-${slug}`, min: "0", max: "14000", step: "1", value: String(q.limits.per_week) });
    const form = el("form", { class: "quota", dataset: { rep: q.rep_id }, novalidate: true },
      el("h3", {}, q.email),
      el("p", { class: "muted" }, `Today ${q.usage.today} of ${q.limits.per_day}; this week ${q.usage.this_week} of ${q.limits.per_week}.`),
      el("div", { class: "row" },
        el("div", { class: "field" }, el("label", { for: day.id }, "Per day"), day),
        el("div", { class: "field" }, el("label", { for: week.id }, "Per week"), week),
        el("button", { type: "submit" }, `Save quota for ${q.email}`)));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError();
      try {
        await api(`/admin/quotas/${encodeURIComponent(q.rep_id)}`, { method: "PUT", body: { per_day: Number(day.value), per_week: Number(week.value) } });
        announce(`Quota for ${q.email} saved.`);
        await Promise.all([loadQuotas(), loadFlags()]);
      } catch (err) {
        showError(err);
      }
    });
    return form;
  }));
}

function list(value) {
  return value.split(",").map((s) => s.trim()).filter(Boolean);
}

async function loadGuardrails() {
  const g = await api("/admin/guardrails");
  $("gr-stages").value = (g.allowed_company_stages || []).join(", ");
  $("gr-industries").value = (g.allowed_industries || []).join(", ");
  $("gr-min").value = g.employee_min ?? "";
  $("gr-max").value = g.employee_max ?? "";
  $("gr-updated").textContent = g.updated_by ? `Last changed by ${g.updated_by}, ${formatDate(g.updated_at)}.` : "";
}

async function saveGuardrails(event) {
  event.preventDefault();
  clearError();
  const number = (v) => (v === "" ? null : Number(v));
  try {
    await api("/admin/guardrails", { method: "PUT", body: {
      allowed_company_stages: list($("gr-stages").value), allowed_industries: list($("gr-industries").value),
      employee_min: number($("gr-min").value), employee_max: number($("gr-max").value) } });
    announce("Guardrails saved.");
    await Promise.all([loadGuardrails(), loadFlags()]);
  } catch (err) {
    showError(err);
  }
}

async function loadReps() {
  ({ reps } = await api("/admin/reps"));
  const select = $("wf-rep");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "" }, "Any rep"), ...reps.map((r) => el("option", { value: r.id, selected: r.id === chosen }, r.email)));
  $("reps").querySelector("tbody").replaceChildren(...reps.map((rep) => {
    const samples = Object.entries(rep.samples).map(([k, n]) => `${n} ${k}`).join(", ") || "none";
    const status = rep.google.status;
    return el("tr", {},
      el("td", { "data-label": "Rep" }, el("strong", {}, rep.name || rep.email), el("div", { class: "muted" }, rep.email)),
      el("td", { "data-label": "Google" }, el("span", { class: `badge ${status}` }, status),
        rep.google.last_refresh_at ? el("div", { class: "muted" }, `refreshed ${formatDate(rep.google.last_refresh_at)}`) : null),
      el("td", { "data-label": "Samples" }, samples),
      el("td", { "data-label": "Voice profile" }, rep.profile ? `v${rep.profile.version}: ${rep.profile.word_count} words from ${rep.profile.sample_count} samples` : "none yet"),
      el("td", { "data-label": "" }, el("a", { href: rep.reconnect_url, class: "button secondary" },
        status === "connected" ? "Reconnect Google" : "Connect Google", el("span", { class: "visually-hidden" }, ` for ${rep.email}`))));
  }));
}

// --- start --------------------------------------------------------------------------------------

async function loadAll() {
  clearError();
  try {
    await loadReps();
    await Promise.all([loadFlags(), loadStats(), loadWorkflows(), loadQuotas(), loadGuardrails()]);
  } catch (err) {
    showError(err);
  }
}

function start() {
  const state = $("wf-state");
  for (const s of STATES) state.append(el("option", { value: s }, STATE_LABELS[s]));
  $("toggle-kill").addEventListener("click", toggleKill);
  $("toggle-send-mode").addEventListener("click", toggleSendMode);
  $("workflow-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    cursors = [null];
    loadWorkflows().catch(showError);
  });
  $("wf-next").addEventListener("click", () => {
    cursors.push($("wf-next").dataset.cursor);
    loadWorkflows().catch(showError);
  });
  $("wf-prev").addEventListener("click", () => {
    cursors.pop();
    loadWorkflows().catch(showError);
  });
  $("guardrails-form").addEventListener("submit", saveGuardrails);
  mountSignIn($("signin"), { defaultUser: "ops@example.com", onChange: (email) => { if (email) loadAll(); } }).catch(showError);
}

start();
