// Runs tus-js-client (the global `tus` of node_modules/tus-js-client/dist/tus.min.js) in the
// page of tests/e2e/test_tus_js_client.py, as an application would, and keeps what it did
// in window.tusRun for the test to read: every request with its answer, the progress, and
// the outcome. No retry policy of its own: tus-js-client's, with its documented option.
"use strict";

window.tusRun = null;
window.tusTestFile = null;

// The test's bytes as a File; the same name, type and lastModified on every page, so that
// tus-js-client's fingerprint finds an upload a previous page left unfinished.
window.loadTestFile = async ({ dataUrl, name, lastModified }) => {
  const response = await fetch(dataUrl);
  if (!response.ok) throw new Error(`GET ${dataUrl}: ${response.status}`);
  const blob = await response.blob();
  window.tusTestFile = new File([blob], name, { type: "application/octet-stream", lastModified });
  return window.tusTestFile.size;
};

window.startTusUpload = async (options) => {
  const run = {
    requests: [],
    progress: 0,
    previousUploads: null,
    outcome: null,
  };
  window.tusRun = run;
  const file = window.tusTestFile;
  const upload = new tus.Upload(file, {
    endpoint: options.endpoint,
    protocol: options.protocol,
    chunkSize: options.chunkSize ?? Infinity,
    headers: { Authorization: `Bearer ${options.token}` },
    metadata: { filename: file.name, filetype: file.type },
    // Back-off between attempts; an attempt that moved the offset resets the count.
    retryDelays: [0, 200, 500, 1000, 2000, 3000, 5000],
    onBeforeRequest(request) {
      const entry = {
        method: request.getMethod(),
        url: request.getURL(),
        offset: request.getHeader("Upload-Offset") ?? null,
        complete: request.getHeader("Upload-Complete") ?? null,
        status: null, // stays null when the request got no answer
        answerOffset: null,
        answerLength: null,
        body: null,
      };
      request.tusTestEntry = entry;
      run.requests.push(entry);
    },
    onAfterResponse(request, response) {
      const entry = request.tusTestEntry;
      entry.status = response.getStatus();
      entry.answerOffset = response.getHeader("Upload-Offset");
      entry.answerLength = response.getHeader("Upload-Length");
      if (entry.method !== "HEAD") entry.body = response.getBody();
    },
    onProgress(bytesSent) {
      run.progress = bytesSent;
    },
    onSuccess() {
      run.outcome = { state: "success", url: upload.url };
    },
    onError(error) {
      run.outcome = { state: "error", message: String(error) };
    },
  });
  if (options.resume) {
    const previous = await upload.findPreviousUploads();
    run.previousUploads = previous.length;
    if (previous.length > 0) upload.resumeFromPreviousUpload(previous[0]);
  }
  upload.start();
};
