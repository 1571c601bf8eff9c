// What a pasted link points at, decided in the page before anything is sent: the same rules as
// shared/voice/links.py `classify` (the server decides again; this only lets the rep see it first).

const VIDEO_ID = /^[A-Za-z0-9_-]{11}$/;
const DRIVE_ID = /^[A-Za-z0-9_-]{10,200}$/;
const SCHEME = /^([A-Za-z][A-Za-z0-9+.\-]*):/;
const BARE_HOST = /^(?:[A-Za-z0-9-]+\.)+[A-Za-z][A-Za-z0-9-]*\.?(?::\d{1,5})?(?:[/?#]|$)|^[A-Za-z0-9.-]+:\d{1,5}(?:[/?#]|$)/;
const YOUTUBE_HOSTS = new Set(["youtube.com", "m.youtube.com", "music.youtube.com", "youtube-nocookie.com", "gaming.youtube.com"]);
const YOUTUBE_PATHS = new Set(["shorts", "embed", "live", "v", "e"]);
const HUBSPOT_HOST = /^app(?:-[a-z0-9]+)?\.hubspot(?:qa)?\.com$/;
const HUBSPOT_TYPE_IDS = { "0-1": "contacts", "0-2": "companies", "0-3": "deals" };
const HUBSPOT_WORDS = { contact: "contacts", company: "companies", deal: "deals" };
const DOC_TYPES = new Set(["document", "spreadsheets", "presentation"]);

export const KIND_LABELS = {
  youtube: "YouTube video",
  drive: "Google Drive file",
  dropbox: "Dropbox share link",
  onedrive: "OneDrive share link",
  box: "Box share link",
  hubspot: "HubSpot record",
  web: "Other web page",
};

export class LinkError extends Error {}

/**
 * Classify a pasted link. Returns {kind, url, ref, folder, label}; throws LinkError with a sentence
 * for the rep when it is not a usable link.
 */
export function classify(input) {
  const text0 = typeof input === "string" ? input.trim() : "";
  if (!text0) throw new LinkError("Paste a link (a web address starting with https://).");
  if (text0.length > 8192) throw new LinkError("The link is too long.");
  if (/\s/.test(text0)) throw new LinkError("That does not look like a link: it contains spaces.");
  let text = text0;
  const scheme = SCHEME.exec(text);
  if (BARE_HOST.test(text)) text = "https://" + text;
  else if (scheme) {
    const name = scheme[1].toLowerCase();
    if (name !== "http" && name !== "https") throw new LinkError(`Only http and https links can be imported, not ${name.slice(0, 20)}: links.`);
  } else if (text.startsWith("//")) text = "https:" + text;
  else throw new LinkError("That does not look like a link. Paste a web address such as https://example.com/page.");

  let parts;
  try {
    parts = new URL(text);
  } catch {
    throw new LinkError("That link is malformed.");
  }
  const host = parts.hostname.toLowerCase().replace(/\.$/, "");
  if (!host) throw new LinkError("That link has no web address in it.");
  const bare = host.startsWith("www.") ? host.slice(4) : host;
  const segments = parts.pathname.split("/").filter(Boolean).map(safeDecode);
  const query = parts.searchParams;
  const link = (kind, extra = {}) => ({ kind, url: text, ref: null, folder: false, label: KIND_LABELS[kind], ...extra });

  if (YOUTUBE_HOSTS.has(bare) || bare === "youtu.be") return link("youtube", { ref: youtubeId(bare, segments, query) });
  if (bare === "docs.google.com" || bare === "drive.google.com") return drive(link, segments, query);
  if (["dropbox.com", "dl.dropboxusercontent.com", "dl.dropbox.com"].includes(bare)) return link("dropbox");
  if (bare === "1drv.ms" || bare === "onedrive.live.com") return link("onedrive");
  if (bare.endsWith(".sharepoint.com") && segments.length && /^:[a-z]:$/.test(segments[0])) return link("onedrive");
  if (bare === "box.com" || bare.endsWith(".box.com")) {
    const shared = (segments.length >= 2 && segments[0] === "s") ||
      (segments.length >= 3 && segments[0] === "shared" && segments[1] === "static");
    if (!shared) throw new LinkError("This Box link is not a shared link. In Box, use Share → Copy shared link.");
    return link("box");
  }
  if (HUBSPOT_HOST.test(host)) return link("hubspot", { ref: hubspotRef(segments) });
  return link("web");
}

function safeDecode(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function youtubeId(host, segments, query) {
  let candidate = "";
  if (host === "youtu.be") candidate = segments[0] || "";
  else if (segments[0] === "watch" || (!segments.length && query.has("v"))) candidate = query.get("v") || "";
  else if (segments.length >= 2 && YOUTUBE_PATHS.has(segments[0])) candidate = segments[1];
  if (VIDEO_ID.test(candidate)) return candidate;
  throw new LinkError("This YouTube link does not point at one video. Paste the link of the video itself (youtube.com/watch?v=… or youtu.be/…).");
}

function drive(link, segmentsIn, query) {
  // Account switches (/u/1/) are not part of the file's address.
  const segments = segmentsIn.filter((s, i) => !(s === "u" || (i > 0 && segmentsIn[i - 1] === "u" && /^\d+$/.test(s))));
  const folders = segments.indexOf("folders");
  if (folders >= 0 && DRIVE_ID.test(segments[folders + 1] || "")) return link("drive", { ref: segments[folders + 1], folder: true, label: "Google Drive folder" });
  const d = segments.indexOf("d");
  if (d >= 0 && DRIVE_ID.test(segments[d + 1] || "")) {
    const docType = d > 0 && DOC_TYPES.has(segments[0]) ? segments[0] : null;
    const label = { document: "Google Doc", spreadsheets: "Google Sheet", presentation: "Google Slides" }[docType] || KIND_LABELS.drive;
    return link("drive", { ref: segments[d + 1], label });
  }
  const id = query.get("id") || "";
  const last = segments[segments.length - 1];
  if ((["open", "uc", "view", "edit"].includes(last) || id) && DRIVE_ID.test(id)) return link("drive", { ref: id });
  throw new LinkError("This Google Drive link does not point at a file. Open the file and copy its link (Share → Copy link).");
}

function hubspotRef(segments) {
  for (let i = 0; i < segments.length; i += 1) {
    const following = segments.slice(i + 1);
    if (segments[i] === "record" && following.length >= 2 && HUBSPOT_TYPE_IDS[following[0]] && /^\d+$/.test(following[1])) {
      return `${HUBSPOT_TYPE_IDS[following[0]]}/${following[1]}`;
    }
    if (HUBSPOT_WORDS[segments[i]] && following.length && /^\d+$/.test(following[0]) && i >= 1) {
      return `${HUBSPOT_WORDS[segments[i]]}/${following[0]}`;
    }
  }
  throw new LinkError("This HubSpot link does not point at a contact, company or deal. Open the record and copy the address from the browser.");
}

/** The POST /ingest body for a classified link. */
export function ingestBody(link) {
  if (link.kind === "youtube") return { source: "youtube", url: link.url };
  if (link.kind === "drive") return { source: "drive", url: link.url };
  // HubSpot record links, share links and pages are all "url": the server reads the kind again.
  return { source: "url", url: link.url };
}
