// The admin's own glue on top of app.js (which attaches Telegram initData / the CSRF token to every HTMX
// request and boots the shell): sidebar highlight, uPlot charts, toasts, type-to-confirm.
(function () {
  "use strict";

  // --- the sidebar follows the page shown (HTMX swaps only #content) ------------------------------------
  function highlightNav() {
    var links = document.querySelectorAll(".admin-nav a[data-section]");
    var path = window.location.pathname;
    var best = null;
    links.forEach(function (a) {
      var href = a.getAttribute("href");
      var matches = path === href || (href !== "/admin" && path.indexOf(href + "/") === 0);
      if (matches && (!best || href.length > best.getAttribute("href").length)) best = a;
    });
    links.forEach(function (a) {
      if (a === best) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
  }

  // --- charts: <div class="uplot-chart" data-chart='{"x": [...], "series": [...], "unit": ""}'> ------------
  var PALETTE = ["#1a66c9", "#2e9d5b", "#d9822b", "#b03a9c", "#6b7785", "#c62828"];
  function cssVar(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }
  function drawChart(el) {
    if (!window.uPlot || el.dataset.drawn) return;
    var spec;
    try { spec = JSON.parse(el.dataset.chart); } catch (e) { return; }
    el.dataset.drawn = "1";
    var text = cssVar("--text", "#1b1f24");
    var grid = cssVar("--secondary-bg", "#eef1f5");
    var unit = spec.unit || "";
    var axis = { stroke: text, grid: { stroke: grid }, ticks: { stroke: grid } };
    var opts = {
      width: el.clientWidth || 320,
      height: parseInt(el.dataset.height || "220", 10),
      series: [{}].concat(spec.series.map(function (s, i) {
        return { label: s.label, stroke: PALETTE[i % PALETTE.length], width: 2,
                 value: function (u, v) { return v == null ? "—" : v.toLocaleString() + (unit ? " " + unit : ""); } };
      })),
      axes: [Object.assign({}, axis), Object.assign({ size: 56 }, axis)],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
    var data = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
    var plot = new window.uPlot(opts, data, el);
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        if (el.clientWidth) plot.setSize({ width: el.clientWidth, height: opts.height });
      }).observe(el);
    }
  }
  function drawCharts(root) {
    (root || document).querySelectorAll(".uplot-chart").forEach(drawChart);
  }

  // --- toasts fade out by themselves --------------------------------------------------------------------
  function ageToasts() {
    document.querySelectorAll("#toasts .toast:not([data-aging])").forEach(function (toast) {
      toast.dataset.aging = "1";
      setTimeout(function () { toast.classList.add("leaving"); }, 4000);
      setTimeout(function () { toast.remove(); }, 4600);
    });
  }

  // --- type-to-confirm for bulk and other heavy actions --------------------------------------------------
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-confirm-typed]");
    if (!button || button.dataset.confirmed === "1") return;
    var dialog = document.getElementById("confirm-dialog");
    if (!dialog || typeof dialog.showModal !== "function") return; // the server still validates
    event.preventDefault();
    event.stopPropagation();
    var word = button.dataset.confirmTyped;
    var input = dialog.querySelector(".confirm-input");
    var ok = dialog.querySelector(".confirm-ok");
    dialog.querySelector(".confirm-question").textContent = button.dataset.confirmQuestion || "";
    dialog.querySelector(".confirm-word").textContent = word;
    input.value = "";
    ok.disabled = true;
    input.oninput = function () { ok.disabled = input.value.trim() !== word; };
    dialog.onclose = function () {
      if (dialog.returnValue === "ok" && input.value.trim() === word) {
        button.dataset.confirmed = "1";
        button.click();
        delete button.dataset.confirmed;
      }
    };
    dialog.showModal();
    input.focus();
  }, true);

  // --- first load inside Telegram: the page again with initData, and its whole layout (sidebar included) -----
  // swapped in; a refusal (not linked to staff, initData expired) is the site's error page: its message shows.
  function bootShell() {
    var shell = document.getElementById("admin-shell");
    if (!shell) return;
    var tg = window.Telegram && window.Telegram.WebApp;
    if (!(tg && tg.initData)) {
      window.location.replace(shell.dataset.login);
      return;
    }
    fetch(shell.dataset.src, { headers: { Authorization: "tma " + tg.initData }, credentials: "same-origin" })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var incoming = doc.querySelector(".admin-layout") || doc.querySelector("main");
        var layout = document.querySelector(".admin-layout");
        if (!incoming || !layout) return;
        var node = document.importNode(incoming, true);
        layout.replaceWith(node);
        if (doc.title) document.title = doc.title;
        window.htmx.process(node);
        afterSwap(node);
      });
  }

  // --- a bulk run's progress: <section data-events="…/events" data-page="…"> follows the server's events ------
  // `progress` moves the bar and the line under it; `end` reloads the page once, for the report per customer.
  // If the stream cannot be opened (an old proxy, the Mini App without a cookie), the page is fetched again
  // every few seconds instead.
  function followProgress(root) {
    var scope = root && root.querySelectorAll ? root : document;
    scope.querySelectorAll("[data-events]").forEach(function (el) {
      if (el.dataset.following || !window.EventSource) return;
      el.dataset.following = "1";
      var reload = function () {
        if (window.htmx) window.htmx.ajax("GET", el.dataset.page, { target: "#content" });
        else window.location.reload();
      };
      var source = new EventSource(el.dataset.events, { withCredentials: true });
      source.addEventListener("progress", function (event) {
        var data = JSON.parse(event.data);
        var bar = el.querySelector("progress");
        var line = el.querySelector("#bulk-progress");
        if (bar) { bar.max = data.total; bar.value = data.processed; }
        if (line) line.textContent = data.text;
        el.dataset.state = data.state;
      });
      source.addEventListener("end", function () { source.close(); reload(); });
      source.onerror = function () {
        if (source.readyState !== EventSource.CLOSED) return;  // the browser reconnects by itself
        setTimeout(function () { if (document.body.contains(el)) reload(); }, 3000);
      };
      // Leaving the page (HTMX swaps #content) ends the stream.
      var watch = new MutationObserver(function () {
        if (!document.body.contains(el)) { source.close(); watch.disconnect(); }
      });
      watch.observe(document.body, { childList: true, subtree: true });
      });
    }

  // --- live figures: <div data-sse="/…/events" data-poll="/…/progress"> with [data-count=name] inside ----------
  // The server pushes `progress` events (JSON figures); each figure goes into its [data-count]. The stream ends
  // when the broadcast is finished. Where it cannot open (inside Telegram no cookie goes with an EventSource),
  // the block re-fetches itself through HTMX, which carries initData, every few seconds instead.
  function writeFigures(el, figures) {
    Object.keys(figures).forEach(function (name) {
      var target = el.querySelector('[data-count="' + name + '"]');
      if (target && figures[name] !== null) target.textContent = String(figures[name]);
    });
  }
  function poll(el) {
    if (!el.dataset.poll || !window.htmx) return;
    setTimeout(function () {
      if (!document.body.contains(el)) return;
      window.htmx.ajax("GET", el.dataset.poll, { target: el, swap: "outerHTML" });
    }, 3000);
  }
  function startStreams(root) {
    (root || document).querySelectorAll("[data-sse]:not([data-streaming])").forEach(function (el) {
      el.dataset.streaming = "1";
      var tg = window.Telegram && window.Telegram.WebApp;
      if (!window.EventSource || (tg && tg.initData)) { poll(el); return; }
      var source = new EventSource(el.dataset.sse);
      var received = false;
      source.addEventListener("progress", function (event) {
        received = true;
        if (!document.body.contains(el)) { source.close(); return; }
        var figures = JSON.parse(event.data);
        writeFigures(el, figures);
        if (figures.finished) source.close();
      });
      source.onerror = function () {
        // Closed by the server after the last figures, or refused: without any figures yet, poll instead.
        if (!document.body.contains(el)) { source.close(); return; }
        if (source.readyState === EventSource.CLOSED && !received) poll(el);
      };
    });
  }

  function afterSwap(root) {
    followProgress(root);
    highlightNav();
    drawCharts(root);
    ageToasts();
    startStreams(root);
  }
  document.addEventListener("DOMContentLoaded", function () { bootShell(); afterSwap(document); });
  window.addEventListener("load", function () { drawCharts(document); });
  document.addEventListener("htmx:afterSettle", function (event) { afterSwap(event.detail.elt); });
  document.addEventListener("htmx:pushedIntoHistory", highlightNav);
  window.addEventListener("popstate", highlightNav);
})();
