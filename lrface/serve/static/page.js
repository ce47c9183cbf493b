// lrface operator page: plain JavaScript, no build step.  Talks to the same server's
// JSON API with the key typed above; every text from the server is shown with
// textContent (never parsed as HTML).
"use strict";

const $ = (id) => document.getElementById(id);

function apiKey() {
  return $("api-key").value.trim();
}

function showError(text) {
  const m = $("message");
  m.textContent = text;
  m.hidden = !text;
}

async function call(method, path, form) {
  showError("");
  $("status").textContent = "working...";
  try {
    const headers = {};
    if (apiKey()) headers["Authorization"] = "Bearer " + apiKey();
    const res = await fetch(path, { method, headers, body: form });
    let data;
    try {
      data = await res.json();
    } catch (e) {
      data = { error: "HTTP " + res.status + " (not JSON)" };
    }
    if (!res.ok) {
      showError(data.error || "HTTP " + res.status);
      return null;
    }
    return data;
  } catch (e) {
    showError("the server could not be reached: " + e.message);
    return null;
  } finally {
    $("status").textContent = "";
  }
}

function figure(src, caption) {
  const f = document.createElement("figure");
  const img = document.createElement("img");
  img.src = src;
  img.width = 112;
  img.height = 112;
  img.alt = caption;
  const c = document.createElement("figcaption");
  c.textContent = caption;
  f.append(img, c);
  return f;
}

async function verify(event) {
  event.preventDefault();
  const form = new FormData();
  form.append("image1", $("verify-image1").files[0]);
  form.append("image2", $("verify-image2").files[0]);
  form.append("crops", "true");
  const r = await call("POST", "/verify", form);
  if (!r) return;
  const v = $("verify-verdict");
  v.textContent = (r.same ? "same person" : "different people") +
    ": similarity " + r.similarity.toFixed(3) + (r.same ? " >= " : " < ") +
    "threshold " + r.threshold.toFixed(3) + " (" + r.models.join(", ") + ")";
  v.className = "verdict " + (r.same ? "same" : "different");
  const crops = $("verify-crops");
  crops.replaceChildren(...r.images.map((im) =>
    figure(im.crop_png, im.source + " (" + im.face_size_px + " px, " + im.model + ")")));
  $("verify-result").hidden = false;
}

async function identify(event) {
  event.preventDefault();
  const form = new FormData();
  form.append("images", $("identify-probe").files[0]);
  form.append("top_k", $("identify-topk").value || "5");
  form.append("crops", "true");
  const r = await call("POST", "/identify", form);
  if (!r) return;
  if (!r.results.length) {
    showError(r.failed.map((f) => f.source + ": " + f.error).join("; "));
    return;
  }
  const res = r.results[0];
  $("identify-crop").src = res.crop_png;
  const known = res.identity !== "unknown";
  const threshold = r.thresholds[res.model];  // the probe's model decides at its own
  const d = $("identify-decision");
  d.textContent = (known ? "match: " + res.identity : "unknown (no one above the threshold)") +
    " (threshold " + threshold.toFixed(3) + ", model " + res.model + ", face " +
    res.face.face_size_px + " px)";
  d.className = "verdict " + (known ? "same" : "different");
  const rows = res.candidates.map((c, i) => {
    const tr = document.createElement("tr");
    if (c.score >= threshold) tr.className = "match";
    for (const text of [String(i + 1), c.identity, c.score.toFixed(3)]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  });
  $("identify-candidates").replaceChildren(...rows);
  $("identify-result").hidden = false;
}

async function refreshIdentities() {
  const r = await call("GET", "/gallery/identities");
  if (!r) return;
  const items = r.identities.map((e) => {
    const li = document.createElement("li");
    li.textContent = e.identity + " (" + e.images + " image" + (e.images === 1 ? "" : "s") + ")";
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = "Remove";
    b.dataset.identity = e.identity;
    b.addEventListener("click", () => removeIdentity(e.identity));
    li.append(b);
    return li;
  });
  $("identities").replaceChildren(...items);
}

async function enrol(event) {
  event.preventDefault();
  const form = new FormData();
  form.append("identity", $("enrol-identity").value);
  for (const f of $("enrol-images").files) form.append("images", f);
  const r = await call("POST", "/gallery/identities", form);
  if (!r) return;
  const p = $("enrol-result");
  p.textContent = "enrolled " + r.enrolled + " image(s) of " + r.identity + " (" + r.images +
    " in all); " + r.identities + " identities in the watchlist";
  p.hidden = false;
  await refreshIdentities();
}

async function removeIdentity(identity) {
  if (!window.confirm("Remove " + identity + " and all its images from the watchlist?")) return;
  const r = await call("DELETE", "/gallery/identities/" + encodeURIComponent(identity));
  if (!r) return;
  const p = $("enrol-result");
  p.textContent = "removed " + r.identity + " (" + r.removed + " image(s))";
  p.hidden = false;
  await refreshIdentities();
}

document.addEventListener("DOMContentLoaded", () => {
  const key = $("api-key");
  key.value = sessionStorage.getItem("lrface-api-key") || "";
  key.addEventListener("change", () => {
    sessionStorage.setItem("lrface-api-key", apiKey());
    refreshIdentities();
  });
  $("verify-form").addEventListener("submit", verify);
  $("identify-form").addEventListener("submit", identify);
  $("enrol-form").addEventListener("submit", enrol);
  $("identities-refresh").addEventListener("click", refreshIdentities);
  if (apiKey()) refreshIdentities();
});
