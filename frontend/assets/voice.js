// The voice-training page: uploads, links, Drive, HubSpot, the sample gallery, the profile and the
// "does this sound like me?" box. Every request goes through api.js.
import { api, upload, mountSignIn, isLocal, loadConfig, loadScript, el, announce, showError, clearError,
         confirmAction, formatDate, percent, currentUser } from "./api.js";
import { classify, ingestBody, LinkError } from "./links.js";
import { barChart, hbarChart } from "./chart.js";

const IN_PROGRESS = new Set(["queued", "extracting", "embedding"]);
const POLL_MS = 1000;
const SOURCE_LABELS = { upload: "Upload", url: "Link", youtube: "YouTube", drive: "Google Drive", hubspot: "HubSpot" };
const STATUS_LABELS = { queued: "Queued", extracting: "Extracting text", embedding: "Learning", ready: "Ready", failed: "Failed" };

const $ = (id) => document.getElementById(id);
let pollTimer = null;
let lastStatuses = new Map();
let user = "";

// --- uploads ------------------------------------------------------------------------------------

function uploadFiles(files) {
  clearError();
  const purpose = $("upload-purpose").value;
  for (const file of files) {
    const bar = el("progress", { max: "100", value: "0", "aria-label": `Upload progress of ${file.name}` });
    const status = el("span", { class: "upload-status muted" }, "Uploading…");
    const item = el("li", { dataset: { file: file.name } }, el("span", {}, file.name), bar, status);
    $("uploads").append(item);
    upload("/ingest", file, { purpose }, (fraction) => { bar.value = Math.round(fraction * 100); })
      .then((answer) => {
        status.textContent = answer.duplicate ? "Already added earlier; nothing new to learn." : "Uploaded; being processed (see your samples below).";
        status.classList.remove("muted");
        announce(`${file.name} uploaded.`);
        refreshSamples();
      })
      .catch((err) => {
        status.textContent = err.message;
        status.className = "upload-status error";
        announce(`${file.name} was not uploaded: ${err.message}`);
      });
  }
}

function setUpDropZone() {
  const zone = $("dropzone");
  const input = $("file-input");
  $("choose-files").addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    uploadFiles([...input.files]);
    input.value = "";
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const files = [...(event.dataTransfer ? event.dataTransfer.files : [])];
    if (files.length) uploadFiles(files);
  });
}

// --- links --------------------------------------------------------------------------------------

function describeLink() {
  const box = $("link-kind");
  const text = $("link-input").value.trim();
  if (!text) {
    box.textContent = "Paste a link to see what it is.";
    box.classList.remove("bad");
    $("link-submit").disabled = true;
    return null;
  }
  try {
    const link = classify(text);
    box.textContent = `Recognised: ${link.label}.`;
    box.classList.remove("bad");
    box.dataset.kind = link.kind;
    $("link-submit").disabled = false;
    return link;
  } catch (err) {
    if (!(err instanceof LinkError)) throw err;
    box.textContent = err.message;
    box.classList.add("bad");
    box.dataset.kind = "";
    $("link-submit").disabled = true;
    return null;
  }
}

async function submitLink(event) {
  event.preventDefault();
  const link = describeLink();
  if (!link) return;
  clearError();
  const body = ingestBody(link);
  const title = $("link-title-input").value.trim();
  if (title) body.title = title;
  try {
    const answer = await api("/ingest", { method: "POST", body });
    announce(answer.duplicate ? "That link was added before." : `${link.label} added; it is being processed.`);
    $("link-input").value = "";
    $("link-title-input").value = "";
    describeLink();
    await refreshSamples();
  } catch (err) {
    showError(err);
  }
}

// --- Google Drive picker ------------------------------------------------------------------------

async function setUpDrive() {
  const button = $("drive-button");
  const fallback = $("drive-fallback");
  const config = await loadConfig();
  // Locally there is no Google account to pick from, and the page must not reach third parties.
  if (isLocal() || !config.oauthClientId) {
    fallback.hidden = false;
    return;
  }
  try {
    await loadScript("https://apis.google.com/js/api.js");
    await new Promise((resolve, reject) => window.gapi.load("picker", { callback: resolve, onerror: reject }));
  } catch {
    fallback.hidden = false;
    return;
  }
  button.hidden = false;
  button.addEventListener("click", () => {
    const client = window.google.accounts.oauth2.initTokenClient({
      client_id: config.oauthClientId,
      scope: "https://www.googleapis.com/auth/drive.readonly",
      callback: (answer) => {
        if (answer.error) {
          showError(new Error("Google Drive access was not granted."));
          return;
        }
        const builder = new window.google.picker.PickerBuilder()
          .addView(window.google.picker.ViewId.DOCS)
          .setOAuthToken(answer.access_token)
          .enableFeature(window.google.picker.Feature.MULTISELECT_ENABLED)
          .setCallback(async (data) => {
            if (data.action !== window.google.picker.Action.PICKED) return;
            for (const doc of data.docs) {
              try {
                await api("/ingest", { method: "POST", body: { source: "drive", file_id: doc.id, title: doc.name } });
                announce(`${doc.name} added from Google Drive.`);
              } catch (err) {
                showError(err);
              }
            }
            refreshSamples();
          });
        if (config.pickerApiKey) builder.setDeveloperKey(config.pickerApiKey);
        if (config.pickerAppId) builder.setAppId(config.pickerAppId);
        builder.build().setVisible(true);
      },
    });
    client.requestAccessToken();
  });
}

// --- HubSpot ------------------------------------------------------------------------------------

async function searchHubspot(event) {
  event.preventDefault();
  clearError();
  const q = $("hubspot-q").value.trim();
  if (q.length < 2) {
    showError(new Error("Type at least two letters to search HubSpot."));
    return;
  }
  try {
    const { results } = await api(`/ingest/hubspot/search?q=${encodeURIComponent(q)}`);
    const box = $("hubspot-results");
    box.replaceChildren();
    if (!results.length) {
      $("hubspot-import").hidden = true;
      announce(`No HubSpot records match “${q}”.`);
      return;
    }
    const kinds = { contacts: "Contact", companies: "Company", deals: "Deal" };
    results.forEach((record, i) => {
      const id = `hs-${record.object_type}-${record.id}`;
      const input = el("input", { type: "radio", name: "record", id, value: `${record.object_type}/${record.id}`, checked: i === 0 });
      box.append(el("label", { for: id }, input, ` ${kinds[record.object_type] || record.object_type}: ${record.label}`,
        record.subtitle ? el("span", { class: "muted" }, ` — ${record.subtitle}`) : null));
    });
    $("hubspot-import").hidden = false;
    announce(`${results.length} HubSpot record${results.length === 1 ? "" : "s"} found.`);
  } catch (err) {
    showError(err);
  }
}

async function importHubspot(event) {
  event.preventDefault();
  clearError();
  const form = event.currentTarget;
  const chosen = form.querySelector("input[name=record]:checked");
  const include = [...form.querySelectorAll("input[name=include]:checked")].map((box) => box.value);
  if (!chosen) return showError(new Error("Choose a record to import."));
  if (!include.length) return showError(new Error("Choose at least one of notes, emails or calls."));
  const [objectType, objectId] = chosen.value.split("/");
  try {
    const answer = await api("/ingest", { method: "POST", body: { source: "hubspot", object_type: objectType, object_id: objectId, include } });
    announce(answer.duplicate ? "That record was imported before." : "HubSpot record added; it is being processed.");
    await refreshSamples();
  } catch (err) {
    showError(err);
  }
}

// --- gallery ------------------------------------------------------------------------------------

async function refreshSamples() {
  if (!user) return;
  clearTimeout(pollTimer);
  const params = new URLSearchParams();
  if ($("filter-status").value) params.set("status", $("filter-status").value);
  if ($("filter-source").value) params.set("source", $("filter-source").value);
  let samples;
  try {
    ({ samples } = await api(`/ingest/samples${params.toString() ? "?" + params : ""}`));
  } catch (err) {
    showError(err);
    return;
  }
  renderSamples(samples);
  // A sample that just finished changes the profile.
  const finished = samples.some((s) => lastStatuses.has(s.id) && IN_PROGRESS.has(lastStatuses.get(s.id)) && !IN_PROGRESS.has(s.status));
  for (const s of samples) {
    if (lastStatuses.has(s.id) && lastStatuses.get(s.id) !== s.status && !IN_PROGRESS.has(s.status)) {
      announce(s.status === "ready" ? `“${s.title || "Sample"}” is ready.` : `“${s.title || "Sample"}” failed: ${s.error || "unknown error"}`);
    }
  }
  lastStatuses = new Map(samples.map((s) => [s.id, s.status]));
  if (finished) refreshProfile();
  // Poll only while something is moving, so an idle page makes no requests.
  if (samples.some((s) => IN_PROGRESS.has(s.status))) pollTimer = setTimeout(refreshSamples, POLL_MS);
}

function sampleTitle(sample) {
  if (sample.title) return sample.title;
  if (sample.source_url) return sample.source_url;
  return (sample.metadata && sample.metadata.filename) || "Untitled";
}

function renderSamples(samples) {
  const body = $("gallery").querySelector("tbody");
  body.replaceChildren();
  const counts = samples.reduce((acc, s) => ({ ...acc, [s.status]: (acc[s.status] || 0) + 1 }), {});
  $("gallery-summary").textContent = samples.length
    ? `${samples.length} sample${samples.length === 1 ? "" : "s"}: ` + Object.entries(counts).map(([k, n]) => `${n} ${STATUS_LABELS[k] || k}`.toLowerCase()).join(", ")
    : "No samples match. Upload files or paste a link above.";
  for (const sample of samples) {
    const title = sampleTitle(sample);
    const statusCell = el("td", { "data-label": "Status" },
      el("span", { class: `badge ${sample.status}` }, STATUS_LABELS[sample.status] || sample.status),
      IN_PROGRESS.has(sample.status) ? el("progress", { "aria-label": `Processing ${title}` }) : null,
      sample.error ? el("p", { class: "error sample-error" }, sample.error) : null);
    const remove = el("button", { type: "button", class: "secondary", "aria-label": `Delete ${title}` }, "Delete");
    remove.addEventListener("click", () => deleteSample(sample, title));
    body.append(el("tr", { dataset: { id: sample.id, status: sample.status } },
      el("td", { "data-label": "Title" }, sample.source_url ? el("a", { href: sample.source_url, rel: "noopener noreferrer", target: "_blank" }, title) : title),
      el("td", { "data-label": "Source" }, SOURCE_LABELS[sample.source_type] || sample.source_type),
      statusCell,
      el("td", { "data-label": "Words", class: "num" }, String(sample.word_count || 0)),
      el("td", { "data-label": "Added" }, formatDate(sample.created_at)),
      el("td", { "data-label": "" }, remove)));
  }
}

async function deleteSample(sample, title) {
  const yes = await confirmAction({
    title: "Delete this sample?",
    message: `“${title}” will be removed and your voice profile rebuilt without it. This cannot be undone.`,
    confirmLabel: "Delete sample",
    danger: true,
  });
  if (!yes) return;
  try {
    await api(`/ingest/samples/${encodeURIComponent(sample.id)}`, { method: "DELETE" });
    announce(`“${title}” deleted.`);
    await refreshSamples();
    await refreshProfile();
    $("gallery-title").focus?.();
  } catch (err) {
    showError(err);
  }
}

async function retrain() {
  try {
    const answer = await api("/ingest/retrain", { method: "POST", body: {} });
    announce(`Retraining ${answer.queued} sample${answer.queued === 1 ? "" : "s"} with ${answer.model}.`);
    await refreshSamples();
  } catch (err) {
    showError(err);
  }
}

// --- profile ------------------------------------------------------------------------------------

function habitList(items, key = "text") {
  if (!items || !items.length) return el("p", { class: "muted" }, "None seen yet.");
  return el("ul", { class: "chips" }, items.map((item) =>
    el("li", {}, `${item[key]}${item.share !== undefined ? ` (${percent(item.share)})` : item.count !== undefined ? ` ×${item.count}` : ""}`)));
}

async function refreshProfile() {
  if (!user) return;
  const box = $("profile");
  let profile;
  try {
    profile = await api("/ingest/profile");
  } catch (err) {
    showError(err);
    return;
  }
  const f = profile.features || {};
  if (!profile.version) {
    box.replaceChildren(el("p", { class: "muted" }, "No profile yet: it is built once your first sample is ready."));
    return;
  }
  const strength = f.strength || {};
  const next = strength.next_level_at ? `; ${strength.next_level_at - (strength.words || 0)} more words for the next level` : "";
  const chart = el("div", { id: "sentence-chart" });
  const sources = el("div", { id: "source-bars" });
  box.replaceChildren(
    el("p", {}, el("strong", {}, `Strength: ${strength.level || "—"}`),
      ` — ${profile.word_count} words from ${profile.sample_count} sample${profile.sample_count === 1 ? "" : "s"}${next}. `,
      el("span", { class: "muted" }, `Version ${profile.version}.`)),
    strength.next_level_at ? el("progress", { max: String(strength.next_level_at), value: String(Math.min(strength.words || 0, strength.next_level_at)), "aria-label": "Profile strength" }) : null,
    el("div", { class: "grid" },
      el("div", {}, el("h3", {}, "How you open"), habitList(f.greetings)),
      el("div", {}, el("h3", {}, "How you sign off"), habitList(f.signoffs)),
      el("div", {}, el("h3", {}, "Phrases you use"), habitList(f.characteristic_phrases, "phrase")),
      el("div", {}, el("h3", {}, "Words that mark your writing"), habitList((f.characteristic_words || []).slice(0, 12), "word"))),
    el("div", { class: "grid" },
      el("div", {}, el("h3", {}, "Sentence lengths (words)"), chart,
        f.sentence_length ? el("p", { class: "muted" }, `Median ${f.sentence_length.median} words; 90% are at most ${f.sentence_length.p90}.`) : null),
      el("div", {}, el("h3", {}, "What each source contributed"), sources)));
  const bins = f.sentence_lengths || [];
  barChart(chart, { title: "Sentences by length in words", categories: bins.map((b) => b.bin), series: [{ name: "Sentences", values: bins.map((b) => b.count), className: "drafted" }] });
  const entries = Object.entries(profile.sources || {});
  hbarChart(sources, {
    title: "Words contributed by each source",
    rows: entries.map(([name, s]) => ({ label: SOURCE_LABELS[name] || name, value: s.words, note: `words, ${s.samples} sample${s.samples === 1 ? "" : "s"}` })),
  });
}

// --- match --------------------------------------------------------------------------------------

async function scoreText(event) {
  event.preventDefault();
  clearError();
  const text = $("match-text").value;
  const out = $("match-result");
  if (text.trim().split(/\s+/).filter(Boolean).length < 20) {
    out.replaceChildren(el("p", { class: "error" }, "Paste at least 20 words: shorter texts say too little about who wrote them."));
    return;
  }
  out.replaceChildren(el("p", { class: "muted" }, "Scoring…"));
  try {
    const { scores } = await api("/ingest/profile/match", { method: "POST", body: { text } });
    const rank = scores.findIndex((s) => s.email === user);
    if (rank < 0) {
      out.replaceChildren(el("p", {}, "You have no voice profile yet, so there is nothing to compare with."));
      return;
    }
    const mine = scores[rank];
    const verdict = mine.score >= 0.5 ? "This sounds like you." : "This does not sound much like you yet.";
    out.replaceChildren(
      el("p", { id: "match-score" }, el("span", { class: "score" }, percent(mine.score)), ` match with your voice. ${verdict}`),
      el("p", { id: "match-rank" }, `You rank ${rank + 1} of ${scores.length} rep${scores.length === 1 ? "" : "s"} for this text.`));
    announce(`Your score: ${percent(mine.score)}, rank ${rank + 1} of ${scores.length}.`);
  } catch (err) {
    out.replaceChildren();
    showError(err);
  }
}

// --- Google connection --------------------------------------------------------------------------

const GOOGLE_STATES = {
  connected: "Connected",
  revoked: "Google stopped accepting the connection (the access was removed or expired). Connect again to keep sending from Gmail.",
  disconnected: "Not connected. Until you connect, follow-ups cannot be sent from your Gmail.",
};

async function refreshGoogle() {
  const g = await api("/token-refresh/status");
  const connect = $("google-connect");
  const disconnect = $("google-disconnect");
  let text = GOOGLE_STATES[g.google_status] || g.google_status;
  if (g.google_status === "connected") {
    text = `Connected as ${g.email}${g.connected_at ? ` since ${formatDate(g.connected_at)}` : ""}.`;
  }
  $("google-state").textContent = text;
  connect.href = g.connect_url;
  connect.textContent = g.google_status === "connected" ? "Reconnect Google" : "Connect Google";
  connect.hidden = false;
  disconnect.hidden = g.google_status === "disconnected";
}

async function disconnectGoogle() {
  const yes = await confirmAction({
    title: "Disconnect your Google account?",
    message: "LeadVoice will stop sending from your Gmail, stop watching for replies and give up its access to your account. Follow-ups already waiting to be sent will be blocked and shown on the dashboard. You can connect again at any time.",
    confirmLabel: "Disconnect Google",
    danger: true,
  });
  if (!yes) return;
  clearError();
  try {
    const answer = await api("/token-refresh/disconnect", { method: "POST", body: {} });
    announce(answer.revoked ? "Google disconnected; its access was revoked." : "Google disconnected.");
    await refreshGoogle();
    $("google-connect").focus();
  } catch (err) {
    showError(err);
  }
}

// --- start --------------------------------------------------------------------------------------

async function start() {
  setUpDropZone();
  $("link-input").addEventListener("input", describeLink);
  $("link-form").addEventListener("submit", submitLink);
  $("hubspot-search").addEventListener("submit", searchHubspot);
  $("hubspot-import").addEventListener("submit", importHubspot);
  $("filter-source").addEventListener("change", refreshSamples);
  $("filter-status").addEventListener("change", refreshSamples);
  $("retrain").addEventListener("click", retrain);
  $("match-form").addEventListener("submit", scoreText);
  $("google-disconnect").addEventListener("click", disconnectGoogle);
  $("gallery-title").tabIndex = -1;
  try {
    await mountSignIn($("signin"), {
      defaultUser: "alex@example.com",
      onChange: (email) => {
        user = email || currentUser();
        lastStatuses = new Map();
        clearError();
        if (user) {
          refreshSamples();
          refreshProfile();
          refreshGoogle().catch(showError);
        }
      },
    });
    await setUpDrive();
  } catch (err) {
    showError(err);
  }
}

start();
