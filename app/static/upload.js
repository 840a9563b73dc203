"use strict";
// The upload page's behaviour. Each file goes in its own XMLHttpRequest (fetch() reports no
// upload progress), so each has its own progress bar and Cancel button. Everything shown
// from a file or an answer is set with textContent, never parsed as HTML.

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

function startUpload(container, file, title, token) {
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

  const xhr = new XMLHttpRequest();
  const started = performance.now();
  const finish = (state, text) => {
    item.dataset.state = state;
    status.textContent = text;
    cancel.disabled = true;
  };

  xhr.upload.onprogress = (event) => {
    if (!event.lengthComputable || event.total === 0) return;
    const percent = (100 * event.loaded) / event.total;
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0 ? event.loaded / seconds : 0;
    const left = rate > 0 ? (event.total - event.loaded) / rate : Infinity;
    progress.value = percent;
    status.textContent =
      `${Math.floor(percent)} % · ${(rate / MiB).toFixed(1)} MiB/s · ` +
      `${formatDuration(left)} left`;
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

function setUp() {
  const form = document.getElementById("upload-form");
  const fileInput = document.getElementById("file");
  const tokenInput = document.getElementById("token");
  const dropZone = document.getElementById("drop-zone");
  const notice = document.getElementById("notice");
  const uploads = document.getElementById("uploads");
  const button = document.getElementById("upload-button");
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
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const files = Array.from(fileInput.files);
    const title = document.getElementById("title").value;
    const token = tokenInput.value.trim();
    notice.textContent = "";
    button.disabled = true;
    try {
      const refusal = await tokenRefusal(token);
      if (refusal) {
        notice.textContent = refusal;
        return;
      }
    } catch (ignored) {
      // /auth unreachable: the uploads themselves will report what is wrong.
    } finally {
      button.disabled = false;
    }
    for (const file of files) startUpload(uploads, file, title, token);
    fileInput.value = "";
  });
}

setUp();
