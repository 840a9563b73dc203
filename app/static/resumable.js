"use strict";
// Resumable uploads for the upload page (upload.js decides which files go this way).
//
// The protocol is the IETF's "Resumable Uploads for HTTP" draft at interop version 6 (draft
// -05), which the service speaks at /files/ beside tus 1.0: its completing append answers with
// the stored object (key, size, SHA-256), which the page shows as it does for form uploads,
// whereas tus answers every append with an empty 204. An upload is created with an empty POST
// (so its URL is known, and remembered in localStorage, before any byte goes), then the file
// goes in PATCH requests of one chunk each, over XMLHttpRequest for progress events.
//
// After a network error, a 5xx or a 409 (offset mismatch, or another request holding the
// upload) the page waits 1, 2, 4, 8 ... s (at most RETRY_CAP_SECONDS, or until the browser
// says it is back online), asks the server's offset with HEAD and continues from there. The
// remembered URL lets a reloaded page continue an upload of the same file (name, size,
// lastModified); the entry is removed once the upload is complete, cancelled or gone.

const RESUMABLE_ENDPOINT = "/files/";
const INTEROP_VERSION = "6";
const RETRY_CAP_SECONDS = 30;

// Answers after which the same request may succeed: network errors are status 0.
function retryableStatus(status) {
  return status === 0 || status >= 500 || [408, 409, 423, 429].includes(status);
}

// A failed request: its status (0: no answer) and what to show of it.
class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

class UploadCancelled extends Error {}

function unfinishedKey(file) {
  return `resumable-upload:${JSON.stringify([
    RESUMABLE_ENDPOINT,
    file.name,
    file.size,
    file.lastModified,
  ])}`;
}

// The remembered upload of this file ({url, started}), or null.
function findUnfinished(file) {
  try {
    const entry = JSON.parse(localStorage.getItem(unfinishedKey(file)));
    return entry && typeof entry.url === "string" ? entry : null;
  } catch (ignored) {
    return null;
  }
}

function rememberUnfinished(file, url) {
  const entry = { url, started: new Date().toISOString() };
  localStorage.setItem(unfinishedKey(file), JSON.stringify(entry));
}

function forgetUnfinished(file) {
  localStorage.removeItem(unfinishedKey(file));
}

// Upload-Metadata: `key base64(UTF-8 value)` pairs, comma-separated.
function encodeMetadata(pairs) {
  return Object.entries(pairs)
    .map(([key, value]) => {
      let binary = "";
      for (const byte of new TextEncoder().encode(value)) binary += String.fromCharCode(byte);
      return `${key} ${btoa(binary)}`;
    })
    .join(",");
}

// DELETE the upload, so that nothing of it stays in storage. The request just aborted may
// still hold the upload for a moment (409 upload_locked): retried, as other failures are, a
// few times.
async function terminateUpload(url, token) {
  const headers = { "Upload-Draft-Interop-Version": INTEROP_VERSION };
  if (token) headers.Authorization = `Bearer ${token}`;
  for (let failures = 1; failures <= 6; failures += 1) {
    let status = 0;
    try {
      status = (await fetch(url, { method: "DELETE", headers })).status;
    } catch (ignored) {
      // a network error: status 0
    }
    if (!retryableStatus(status)) return;
    await new Promise((resolve) => setTimeout(resolve, 1000 * 2 ** (failures - 1)));
  }
}

class ResumableUpload {
  // callbacks: onProgress(position) with the bytes stored plus those in flight;
  // onRetry(seconds, reason) before a pause; onResumed(offset) after HEAD answered.
  constructor(file, { token, chunkSize, metadata, onProgress, onRetry, onResumed }) {
    this.file = file;
    this.token = token;
    this.chunkSize = chunkSize;
    this.metadata = metadata;
    this.onProgress = onProgress;
    this.onRetry = onRetry;
    this.onResumed = onResumed;
    this.url = null;
    this.xhr = null;
    this.cancelled = false;
    this.wake = null;
  }

  // Upload the rest of the file; the completing answer's JSON ({..., object}), or null when
  // that answer was lost and HEAD only says the upload is complete.
  async run() {
    const entry = findUnfinished(this.file);
    let offset = 0;
    if (entry) {
      try {
        offset = await this.retrying(() => this.head(entry.url));
        this.url = entry.url;
        this.onResumed(offset);
      } catch (error) {
        if (!(error instanceof HttpError) || ![404, 410].includes(error.status)) throw error;
        forgetUnfinished(this.file); // expired or removed: a new upload
      }
    }
    if (!this.url) {
      this.url = await this.retrying(() => this.create());
      if (this.cancelled) {
        // Cancelled while the creation's answer was on its way.
        terminateUpload(this.url, this.token);
        throw new UploadCancelled();
      }
      rememberUnfinished(this.file, this.url);
    }
    let failures = 0;
    while (offset < this.file.size) {
      const end = Math.min(this.file.size, offset + this.chunkSize);
      try {
        const answer = await this.append(offset, end);
        if (end === this.file.size) {
          forgetUnfinished(this.file);
          return JSON.parse(answer.body);
        }
        offset = answer.offset;
        failures = 0;
      } catch (error) {
        if (!(error instanceof HttpError) || !retryableStatus(error.status)) throw error;
        failures += 1;
        await this.pause(failures, error.message);
        offset = await this.retrying(() => this.head(this.url), failures);
        this.onResumed(offset);
      }
    }
    forgetUnfinished(this.file);
    return null;
  }

  // Stop: abort the request in flight and terminate the upload (DELETE), so that nothing of
  // it stays in storage.
  cancel() {
    this.cancelled = true;
    if (this.xhr) this.xhr.abort();
    if (this.wake) this.wake();
    forgetUnfinished(this.file);
    if (this.url) terminateUpload(this.url, this.token);
  }

  // `attempt()` until it succeeds; the pauses go on growing from `failedBefore` failures.
  async retrying(attempt, failedBefore = 0) {
    for (let failures = failedBefore + 1; ; failures += 1) {
      try {
        return await attempt();
      } catch (error) {
        if (!(error instanceof HttpError) || !retryableStatus(error.status)) throw error;
        await this.pause(failures, error.message);
      }
    }
  }

  // Wait 1, 2, 4 ... s (capped), or until the browser is back online, or cancelled.
  pause(failures, reason) {
    const seconds = Math.min(RETRY_CAP_SECONDS, 2 ** (failures - 1));
    this.onRetry(seconds, reason);
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        window.removeEventListener("online", done);
        this.wake = null;
        if (this.cancelled) reject(new UploadCancelled());
        else resolve();
      };
      const timer = setTimeout(done, seconds * 1000);
      window.addEventListener("online", done);
      this.wake = done;
    });
  }

  async create() {
    const answer = await this.send("POST", RESUMABLE_ENDPOINT, {
      "Upload-Complete": "?0",
      "Upload-Length": String(this.file.size),
      "Upload-Metadata": encodeMetadata(this.metadata),
    });
    const location = answer.header("Location");
    if (answer.status !== 201 || !location) {
      throw new HttpError(answer.status, `HTTP ${answer.status} without a Location`);
    }
    return new URL(location, window.location.href).pathname;
  }

  async head(url) {
    const answer = await this.send("HEAD", url, {});
    const offset = Number.parseInt(answer.header("Upload-Offset"), 10);
    if (!Number.isSafeInteger(offset)) {
      throw new HttpError(answer.status, `HTTP ${answer.status} without an Upload-Offset`);
    }
    return offset;
  }

  async append(offset, end) {
    const complete = end === this.file.size;
    const answer = await this.send(
      "PATCH",
      this.url,
      {
        "Upload-Offset": String(offset),
        "Upload-Complete": complete ? "?1" : "?0",
        "Content-Type": "application/partial-upload",
      },
      this.file.slice(offset, end),
      (loaded) => this.onProgress(offset + loaded),
    );
    const next = Number.parseInt(answer.header("Upload-Offset"), 10);
    if (!complete && !(next > offset)) {
      throw new HttpError(answer.status, `the offset did not move past ${offset}`);
    }
    return { body: answer.body, offset: next };
  }

  // One request; resolves with {status, body, header(name)} for a 2xx, else rejects with an
  // HttpError (status 0 for a network error).
  send(method, url, headers, body, onUploaded) {
    if (this.cancelled) return Promise.reject(new UploadCancelled());
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, url);
      xhr.setRequestHeader("Upload-Draft-Interop-Version", INTEROP_VERSION);
      xhr.setRequestHeader("Accept", "application/json");
      if (this.token) xhr.setRequestHeader("Authorization", `Bearer ${this.token}`);
      for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
      if (onUploaded) xhr.upload.onprogress = (event) => onUploaded(event.loaded);
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          resolve({
            status: xhr.status,
            body: xhr.responseText,
            header: (name) => xhr.getResponseHeader(name),
          });
        } else {
          reject(new HttpError(xhr.status, errorText(xhr.status, xhr.statusText, xhr.responseText)));
        }
      };
      xhr.onerror = () => reject(new HttpError(0, "the connection failed"));
      xhr.ontimeout = xhr.onerror;
      xhr.onabort = () => reject(new UploadCancelled());
      this.xhr = xhr;
      xhr.send(body === undefined ? null : body);
    });
  }
}
