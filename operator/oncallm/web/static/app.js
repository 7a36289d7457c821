// OnCallM web view: copy buttons, filter auto-submit and live pages. No build step.
// Live pages carry <div id="live" data-poll=URL data-etag=ETAG data-live="true">. The script
// long-polls URL with HEAD + If-None-Match (the server answers on change, or 304 after a
// while), then fetches the page again and swaps #live. Rendering stays on the server, where
// every value is escaped.
(function () {
  "use strict";

  var RETRY_MS = 5000;

  function setStatus(text, isError) {
    var el = document.getElementById("live-status");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain http (no secure context): the old way still works.
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      if (ok) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-copy]") : null;
    if (!button) return;
    copyText(button.getAttribute("data-copy")).then(function () {
      button.textContent = "Copied";
      button.classList.add("copied");
    }, function () {
      button.textContent = "Select & copy";
    });
    setTimeout(function () {
      button.textContent = "Copy";
      button.classList.remove("copied");
    }, 2000);
  });

  document.addEventListener("change", function (event) {
    var form = event.target.form;
    if (form && form.hasAttribute("data-autosubmit")) form.submit();
  });

  function wait(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  function withWait(url, seconds) {
    return url + (url.indexOf("?") >= 0 ? "&" : "?") + "wait=" + seconds;
  }

  async function refresh() {
    var response = await fetch(window.location.href, { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) throw new Error("page answered " + response.status);
    var doc = new DOMParser().parseFromString(await response.text(), "text/html");
    var fresh = doc.getElementById("live");
    var current = document.getElementById("live");
    if (!fresh || !current) throw new Error("page has no live region");
    current.replaceWith(document.importNode(fresh, true));
    if (doc.title) document.title = doc.title;
    return fresh;
  }

  async function follow() {
    var live = document.getElementById("live");
    if (!live || live.getAttribute("data-live") !== "true") return;
    setStatus("live");
    while (true) {
      live = document.getElementById("live");
      if (!live || live.getAttribute("data-live") !== "true") {
        setStatus("");
        return;
      }
      var poll = live.getAttribute("data-poll");
      var etag = live.getAttribute("data-etag");
      var response;
      try {
        response = await fetch(withWait(poll, live.getAttribute("data-wait") || 25), {
          method: "HEAD",
          headers: { "If-None-Match": etag },
          cache: "no-store",
          credentials: "same-origin"
        });
      } catch (e) {
        setStatus("connection lost, retrying…", true);
        await wait(RETRY_MS);
        continue;
      }
      if (response.status === 304) { setStatus("live"); continue; }
      if (response.status === 404) {
        setStatus("this analysis was deleted", true);
        return;
      }
      if (!response.ok) {
        setStatus("server answered " + response.status + ", retrying…", true);
        await wait(RETRY_MS);
        continue;
      }
      if (response.headers.get("ETag") === etag) continue;
      try {
        await refresh();
        setStatus("live");
      } catch (e) {
        setStatus("update failed, retrying…", true);
        await wait(RETRY_MS);
      }
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", follow);
  } else {
    follow();
  }
})();
