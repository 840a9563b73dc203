"use strict";
// The upload page's behaviour. Each file goes in its own XMLHttpRequest (fetch() reports no
// upload progress), so each has its own progress bar and Cancel button; files from a size on
// go resumable, in chunks (resumable.js). Everything shown from a file or an answer is set
// with textContent, never parsed as HTML.

const MiB = 1024 * 1024;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function formatSize(bytes) {
  return bytes >= MiB ? `${(bytes / MiB).toFixed(1)} MiB (${bytes} bytes)` : `${bytes} bytes`;
}

function formatDuration(seconds) {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.ceil(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

// The service answers every error as {"error": {"code", "message"}}; anything else (a
// proxy's own error page, say) is shown by its status line.
function errorText(status, statusText, body) {
  try {
    const error = JSON.parse(body).error;
    if (error && error.code) return `${error.code}: ${error.message}`;
  } catch (ignored) {
    // not JSON
  }
  return `HTTP ${status} ${statusText}`;
}

function authorization(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// Asking /auth first (no body) refuses a bad token before any byte of the file is sent. The
// POST's own refusals are shown too: the service answers, then reads and drops what the
// browser is still sending for a while, so the answer arrives rather than a reset.
async function tokenRefusal(token) {
  const response = await fetch("/auth", { headers: authorization(token), cache: "no-store" });
  if (response.status !== 401) return null;
  return errorText(response.status, response.statusText, await response.text());
}

function showResult(list, stored) {
  for (const [label, className, value] of [
    ["Key", "key", stored.key],
    ["Size", "size", formatSize(stored.size)],
    ["SHA-256", "sha256", stored.sha256],
  ]) {
    list.append(element("dt", "", label), element("dd", className, value));
  }
  list.hidden = false;
}

// The list item of one upload: name, progress bar, status, Cancel, and the result once stored.
function uploadItem(container, file) {
  const item = element("li", "upload");
  const progress = element("progress");
  progress.max = 100;
  progress.setAttribute("aria-label", `${file.name}: upload progress`);
  progress.value = 0;
  const status = element("span", "status", "starting…");
  const cancel = element("button", "cancel", "Cancel");
  cancel.type = "button";
  const result = element("dl", "result");
  result.hidden = true;
  item.append(element("span", "name", file.name), progress, status, cancel, result);
  item.dataset.state = "uploading";
  container.append(item);
  const finish = (state, text) => {
    item.dataset.state = state;
    status.textContent = text;
    cancel.disabled = true;
  };
  return { item, progress, status, cancel, result, finish };
}

// "42 % · 11.8 MiB/s · 1 s left": `rate` is over the bytes this page has sent.
function progressText(position, total, rate) {
  const percent = (100 * position) / total;
  const left = rate > 0 ? (total - position) / rate : Infinity;
  return `${Math.floor(percent)} % · ${(rate / MiB).toFixed(1)} MiB/s · ${formatDuration(left)} left`;
}

function startUpload(container, file, title, token) {
  const { progress, status, cancel, result, finish } = uploadItem(container, file);
  const xhr = new XMLHttpRequest();
  const started = performance.now();

  xhr.upload.onprogress = (event) => {
    if (!event.lengthComputable || event.total === 0) return;
    const seconds = (performance.now() - started) / 1000;
    progress.value = (100 * event.loaded) / event.total;
    status.textContent = progressText(event.loaded, event.total, seconds > 0 ? event.loaded / seconds : 0);
  };
  // Every byte is sent; the service completes the upload in storage before it answers.
  xhr.upload.onload = () => {
    progress.value = 100;
    status.textContent = "100 % sent · storing…";
  };
  xhr.onload = () => {
    if (xhr.status === 201) {
      const stored = JSON.parse(xhr.responseText).files[0];
      finish("stored", "stored");
      showResult(result, stored);
    } else {
      finish("failed", errorText(xhr.status, xhr.statusText, xhr.responseText));
    }
  };
  xhr.onerror = () => finish("failed", "the connection failed before the server answered");
  xhr.onabort = () => finish("cancelled", "cancelled");
  cancel.addEventListener("click", () => xhr.abort());

  const body = new FormData();
  body.append("title", title); // fields before the file, as the plain form sends them
  body.append("file", file, file.name);
  xhr.open("POST", "/uploads");
  xhr.setRequestHeader("Accept", "application/json");
  if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
  xhr.send(body);
}

// A large file goes in chunks to /files/ (resumable.js): it survives a dropped connection,
// and a reloaded page can continue it.
async function startResumableUpload(container, file, title, token, chunkSize) {
  const { item, progress, status, cancel, result, finish } = uploadItem(container, file);
  let started = performance.now();
  let startedAt = 0; // bytes stored when `started` was taken
  const upload = new ResumableUpload(file, {
    token,
    chunkSize,
    metadata: { filename: file.name, filetype: file.type || "application/octet-stream", title },
    onProgress: (position) => {
      if (item.dataset.state !== "uploading") return;
      progress.value = (100 * position) / file.size;
      if (position === file.size) {
        status.textContent = "100 % sent · storing…";
        return;
      }
      const seconds = (performance.now() - started) / 1000;
      const rate = seconds > 0 ? (position - startedAt) / seconds : 0;
      status.textContent = progressText(position, file.size, rate);
    },
    onRetry: (seconds, reason) => {
      item.dataset.retries = String(Number(item.dataset.retries || 0) + 1);
      status.textContent = `${reason} · retrying in ${seconds} s`;
    },
    onResumed: (offset) => {
      item.dataset.resumedAt = String(offset);
      progress.value = (100 * offset) / file.size;
      status.textContent = `resuming at ${Math.floor((100 * offset) / file.size)} %`;
      started = performance.now();
      startedAt = offset;
    },
  });
  cancel.addEventListener("click", () => upload.cancel());
  try {
    const answer = await upload.run();
    finish("stored", "stored");
    progress.value = 100;
    if (answer && answer.object) showResult(result, answer.object);
  } catch (error) {
    if (error instanceof UploadCancelled) finish("cancelled", "cancelled");
    else finish("failed", error.message);
  }
}

// After a reload, files chosen again that were partly uploaded before: offer to continue them
// (Upload does; "Start over" forgets them and removes what the server holds of them).
function offerToContinue(files, token) {
  const offer = document.getElementById("resume-offer");
  const unfinished = files.filter((file) => findUnfinished(file));
  offer.hidden = unfinished.length === 0;
  if (offer.hidden) return;
  const names = unfinished.map((file) => `“${file.name}”`).join(", ");
  document.getElementById("resume-text").textContent =
    `${names} ${unfinished.length === 1 ? "was" : "were"} partly uploaded before: ` +
    "continue where it stopped, or start over.";
  document.getElementById("restart-button").onclick = () => {
    for (const file of unfinished) {
      const entry = findUnfinished(file);
      forgetUnfinished(file);
      terminateUpload(entry.url, token());
    }
    offer.hidden = true;
  };
}

function setUp() {
  const form = document.getElementById("upload-form");
  const fileInput = document.getElementById("file");
  const tokenInput = document.getElementById("token");
  const dropZone = document.getElementById("drop-zone");
  const notice = document.getElementById("notice");
  const uploads = document.getElementById("uploads");
  const button = document.getElementById("upload-button");
  const token = () => tokenInput.value.trim();
  document.getElementById("token-row").hidden = false;
  document.getElementById("drop-hint").hidden = false;

  dropZone.addEventListener("dragover", (event) => {
    event.preventDefault();
    dropZone.classList.add("dragging");
  });
  dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
  dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropZone.classList.remove("dragging");
    fileInput.files = event.dataTransfer.files;
    offerToContinue(Array.from(fileInput.files), token);
  });
  fileInput.addEventListener("change", () => offerToContinue(Array.from(fileInput.files), token));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const files = Array.from(fileInput.files);
    const title = document.getElementById("title").value;
    notice.textContent = "";
    button.disabled = true;
    try {
      const refusal = await tokenRefusal(token());
      if (refusal) {
        notice.textContent = refusal;
        return;
      }
    } catch (ignored) {
      // /auth unreachable: the uploads themselves will report what is wrong.
    } finally {
      button.disabled = false;
    }
    document.getElementById("resume-offer").hidden = true;
    // Files from this size go resumable, in chunks of this size (see index.html).
    const resumableFrom = Number(uploads.dataset.resumableFrom);
    const chunkSize = Number(uploads.dataset.chunkSize);
    for (const file of files) {
      if (file.size >= resumableFrom) {
        startResumableUpload(uploads, file, title, token(), chunkSize);
      } else {
        startUpload(uploads, file, title, token());
      }
    }
    fileInput.value = "";
  });
}

setUp();
