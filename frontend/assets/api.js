// The one way the pages talk to the APIs: base URL from config.json, who is calling, readable errors.
//
// Under config.env === "local" the caller is named by the X-Dev-User header (the local stack accepts it
// only there); anywhere else the caller signs in with Google Identity Services and every request carries
// the Google ID token as a bearer token.

const DEV_USER_KEY = "leadvoice.devUser";
const TOKEN_KEY = "leadvoice.idToken";
const GSI_SCRIPT = "https://accounts.google.com/gsi/client";

export const LOCAL_USERS = [
  { email: "alex@example.com", label: "Alex Rivera (rep)" },
  { email: "sam@example.com", label: "Sam Okafor (rep)" },
  { email: "ops@example.com", label: "Ops (ops)" },
];

let config = null;

/** config.json, read once. A deployment writes {apiBase, oauthClientId}; local adds env: "local". */
export async function loadConfig() {
  if (config) return config;
  const response = await fetch("config.json", { cache: "no-store" });
  if (!response.ok) throw new ApiError("config_missing", "config.json could not be read; the page cannot reach the API.", response.status);
  const raw = await response.json();
  config = { env: raw.env || "production", apiBase: (raw.apiBase || "").replace(/\/+$/, ""),
             oauthClientId: raw.oauthClientId || "", pickerApiKey: raw.pickerApiKey || "",
             pickerAppId: raw.pickerAppId || "" };
  return config;
}

export function isLocal() {
  return Boolean(config && config.env === "local");
}

export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

// --- who is calling -----------------------------------------------------------------------------

// Each page remembers its own local user: the dashboard is used as ops, the training page as a rep.
function devUserKey() {
  return `${DEV_USER_KEY}:${location.pathname}`;
}

export function currentUser() {
  if (isLocal()) return localStorage.getItem(devUserKey()) || "";
  const token = sessionStorage.getItem(TOKEN_KEY);
  const claims = token ? decodeJwt(token) : null;
  if (!claims || claims.exp * 1000 < Date.now()) return "";
  return claims.email || "";
}

export function setDevUser(email) {
  localStorage.setItem(devUserKey(), email);
}

function decodeJwt(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return null;
  }
}

function authHeaders() {
  if (isLocal()) {
    const user = currentUser();
    return user ? { "X-Dev-User": user } : {};
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/**
 * Fill `container` with the sign-in control: a picker of the seeded users locally, Google's button
 * elsewhere. `onChange(email)` runs once a user is known, and again when it changes.
 */
export async function mountSignIn(container, { defaultUser, onChange }) {
  await loadConfig();
  container.replaceChildren();
  if (isLocal()) {
    if (!currentUser() && defaultUser) setDevUser(defaultUser);
    const label = el("label", { for: "dev-user" }, "Signed in as (local)");
    const select = el("select", { id: "dev-user", name: "dev-user" });
    for (const user of LOCAL_USERS) {
      const option = el("option", { value: user.email }, user.label);
      if (user.email === currentUser()) option.selected = true;
      select.append(option);
    }
    select.addEventListener("change", () => {
      setDevUser(select.value);
      onChange(select.value);
    });
    container.append(label, select);
    onChange(currentUser());
    return;
  }
  const slot = el("div", { id: "gsi-button" });
  const who = el("span", { class: "muted" });
  container.append(slot, who);
  const signedIn = (email) => {
    who.textContent = email ? `Signed in as ${email}` : "";
    onChange(email);
  };
  try {
    await loadScript(GSI_SCRIPT);
  } catch {
    container.append(el("p", { role: "alert", class: "error" }, "Google sign-in could not load. Check your connection and reload the page."));
    return;
  }
  google.accounts.id.initialize({
    client_id: config.oauthClientId,
    auto_select: true,
    callback: (answer) => {
      sessionStorage.setItem(TOKEN_KEY, answer.credential);
      signedIn(currentUser());
    },
  });
  google.accounts.id.renderButton(slot, { theme: "outline", size: "medium", text: "signin_with" });
  if (currentUser()) signedIn(currentUser());
  else google.accounts.id.prompt();
}

const scripts = new Map();

/** Load a third-party script once; rejects when it cannot load (offline, blocked). */
export function loadScript(src) {
  if (!scripts.has(src)) {
    scripts.set(src, new Promise((resolve, reject) => {
      const tag = document.createElement("script");
      tag.src = src;
      tag.async = true;
      tag.onload = () => resolve();
      tag.onerror = () => {
        scripts.delete(src);
        tag.remove();
        reject(new Error(`could not load ${src}`));
      };
      document.head.append(tag);
    }));
  }
  return scripts.get(src);
}

// --- requests -----------------------------------------------------------------------------------

function url(path) {
  return `${config.apiBase}${path}`;
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's HTML page): fall through to a sentence built from the status.
  }
  if (body && body.message) return new ApiError(body.error || "error", body.message, response.status);
  const fallback = {
    401: "You are not signed in, or your sign-in has expired. Sign in again.",
    403: "Your account may not do this.",
    404: "That was not found.",
    413: "That is too large.",
    429: "Too many requests; wait a moment and try again.",
    503: "A service the system depends on is unavailable; try again shortly.",
  };
  return new ApiError("http_" + response.status, fallback[response.status] || `The server answered ${response.status}.`, response.status);
}

/** JSON in, JSON out; a non-2xx answer throws an ApiError carrying the server's sentence. */
export async function api(path, { method = "GET", body, signal } = {}) {
  await loadConfig();
  const headers = { Accept: "application/json", ...authHeaders() };
  const init = { method, headers, signal };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url(path), init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError("network", "The server could not be reached. Check your connection and try again.", 0);
  }
  if (!response.ok) throw await errorFrom(response);
  return response.status === 204 ? null : response.json();
}

/**
 * POST a file as multipart with upload progress (fetch cannot report upload progress; XHR can).
 * `onProgress(fraction)` gets 0..1. Resolves with the JSON answer; rejects with an ApiError.
 */
export function upload(path, file, fields, onProgress) {
  return loadConfig().then(() => new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("file", file, file.name);
    for (const [key, value] of Object.entries(fields || {})) if (value) form.append(key, value);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url(path));
    for (const [key, value] of Object.entries(authHeaders())) xhr.setRequestHeader(key, value);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve(body);
      } else {
        reject(new ApiError((body && body.error) || "http_" + xhr.status,
          (body && body.message) || `The upload failed (${xhr.status}).`, xhr.status));
      }
    };
    xhr.onerror = () => reject(new ApiError("network", "The upload could not reach the server. Check your connection and try again.", 0));
    xhr.send(form);
  }));
}

// --- small DOM helpers shared by the pages --------------------------------------------------------

/** An element with attributes and children; strings become text nodes (never HTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Say something in the page's polite live region (screen readers read it; it is also visible). */
export function announce(message) {
  const region = document.getElementById("status");
  if (!region) return;
  region.textContent = "";
  // A fresh text node after a tick, so the same sentence twice is still announced.
  setTimeout(() => { region.textContent = message; }, 30);
}

/** Show an error sentence in the page's alert region. */
export function showError(err) {
  const region = document.getElementById("errors");
  const message = err instanceof ApiError || (err && err.message) ? err.message : String(err);
  if (region) {
    region.replaceChildren(el("p", {}, message));
    region.hidden = false;
  }
}

export function clearError() {
  const region = document.getElementById("errors");
  if (region) {
    region.replaceChildren();
    region.hidden = true;
  }
}

/**
 * Open a modal <dialog>: the browser traps focus inside and Escape closes it; focus goes back to
 * the control that opened it. Resolves with the dialog's returnValue.
 */
export function openDialog(dialog, opener = document.activeElement) {
  return new Promise((resolve) => {
    const closed = () => {
      dialog.removeEventListener("close", closed);
      if (opener && typeof opener.focus === "function" && opener.isConnected) opener.focus();
      resolve(dialog.returnValue);
    };
    dialog.returnValue = "";
    dialog.addEventListener("close", closed);
    dialog.showModal();
  });
}

/** Ask for confirmation in the page's confirm dialog; resolves true only for the confirm button. */
export async function confirmAction({ title, message, confirmLabel = "Confirm", danger = false }) {
  const dialog = document.getElementById("confirm-dialog");
  dialog.querySelector("[data-title]").textContent = title;
  dialog.querySelector("[data-message]").textContent = message;
  const ok = dialog.querySelector("[data-confirm]");
  ok.textContent = confirmLabel;
  ok.classList.toggle("danger", danger);
  const answer = await openDialog(dialog);
  return answer === "confirm";
}

export function formatDate(value) {
  if (!value) return "—";
  // The API writes "2026-01-01 10:00:00+00:00" in places and ISO 8601 in others; both parse once the
  // space is a T.
  const date = new Date(String(value).replace(" ", "T"));
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function percent(score) {
  return score === null || score === undefined ? "—" : `${Math.round(Number(score) * 100)}%`;
}
