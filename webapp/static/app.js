// Telegram glue. Works in a plain browser too: every Telegram call is guarded, and every feature here has a
// browser equivalent (links, native confirm, clipboard, Web Share).
//
// Nothing waits for telegram-web-app.js. Telegram opens the Mini App with its launch parameters (signed initData
// among them) in the address's hash; they are read here and kept for the session's later pages, the page is
// fetched with them at once, and the script is loaded alongside: BackButton, MainButton and haptics join in
// when it arrives, which may be never where telegram.org is blocked. A browser (no launch parameters) never
// loads it at all.
(function () {
  "use strict";
  var TELEGRAM_JS = "https://telegram.org/js/telegram-web-app.js";
  var STORED_INIT_DATA = "vpnshop.initData";
  var HOME = "/app";
  var tg = null;  // Telegram.WebApp, once its script has loaded

  function storage(action, key, value) {
    try {
      return action === "get" ? window.sessionStorage.getItem(key) : window.sessionStorage.setItem(key, value);
    } catch (e) { return null; }  // storage switched off: launch parameters only live in the address then
  }

  function launchParam(name) {
    return new URLSearchParams(window.location.hash.slice(1)).get(name);
  }

  // The signed initData: from the launch address, else from this session's first page (the hash is gone once
  // htmx changes the address), else where Telegram's own script keeps it.
  function launchInitData() {
    var fromHash = launchParam("tgWebAppData");
    if (fromHash) {
      storage("set", STORED_INIT_DATA, fromHash);
      return fromHash;
    }
    var stored = storage("get", STORED_INIT_DATA);
    if (stored) return stored;
    try {
      var params = JSON.parse(storage("get", "__telegram__initParams") || "{}");
      return params.tgWebAppData || "";
    } catch (e) { return ""; }
  }

  var initData = launchInitData();
  var inTelegram = !!initData;

  function currentInitData() {
    return (tg && tg.initData) || initData;
  }

  // Telegram's colours before its script has set them, so the first paint is already in the chat's theme.
  function applyLaunchTheme() {
    var raw = launchParam("tgWebAppThemeParams") || storage("get", "__telegram__themeParams");
    var theme;
    try { theme = JSON.parse(raw || "null"); } catch (e) { theme = null; }
    if (!theme || typeof theme !== "object") return;
    Object.keys(theme).forEach(function (key) {
      if (/^[a-z_]+$/.test(key) && /^#[0-9a-f]{3,8}$/i.test(theme[key])) {
        document.documentElement.style.setProperty("--tg-theme-" + key.replace(/_/g, "-"), theme[key]);
      }
    });
  }

  function haptic(kind) {
    if (tg && tg.HapticFeedback) {
      if (kind === "select") tg.HapticFeedback.selectionChanged();
      else tg.HapticFeedback.notificationOccurred(kind);
    }
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : null;
  }

  // --- first load: the shell fetches the page again with credentials, or sends a browser to sign in ---------
  function bootShell() {
    var shell = document.getElementById("shell");
    if (!shell) return;
    if (inTelegram) {
      window.htmx.ajax("GET", shell.dataset.src, { target: "#content", swap: "innerHTML" });
    } else {
      window.location.replace(shell.dataset.login);
    }
  }

  // --- every HTMX request carries who is asking ------------------------------------------------------------
  document.addEventListener("htmx:configRequest", function (event) {
    if (inTelegram) {
      event.detail.headers["Authorization"] = "tma " + currentInitData();
    }
    var token = csrfToken();
    if (token) event.detail.headers["X-CSRF-Token"] = token;
  });

  // Going back (Telegram's BackButton, the browser's own) finds no copy of the page in htmx's history cache
  // (kept at 0: pages hold personal data), so htmx fetches it again, and this request skips configRequest.
  document.addEventListener("htmx:historyCacheMiss", function (event) {
    if (inTelegram) event.detail.xhr.setRequestHeader("Authorization", "tma " + currentInitData());
  });

  // --- Telegram's own controls follow the page that is showing -------------------------------------------
  function syncBackButton() {
    if (!tg || !tg.BackButton) return;
    if (window.location.pathname === HOME) tg.BackButton.hide();
    else tg.BackButton.show();
  }

  var mainButtonTarget = null;
  function syncMainButton() {
    if (!tg || !tg.MainButton) return;
    mainButtonTarget = document.querySelector("#content [data-main-button]");
    if (mainButtonTarget) {
      // "Pay 199 ₽" follows the price on the page (a promo code changes it without a new page).
      var text = mainButtonTarget.dataset.mainButton;
      var amount = mainButtonTarget.dataset.mainButtonAmount && document.querySelector(mainButtonTarget.dataset.mainButtonAmount);
      if (amount && mainButtonTarget.dataset.mainButtonTemplate) {
        text = mainButtonTarget.dataset.mainButtonTemplate.replace("{amount}", amount.textContent.trim());
      }
      tg.MainButton.setText(text);
      tg.MainButton.show();
    } else {
      tg.MainButton.hide();
    }
  }

  // /app/help#slug: open the FAQ entry the link points at.
  function openLinkedDetails() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    var target = id && document.getElementById(id);
    if (target && target.tagName === "DETAILS") {
      target.open = true;
      target.scrollIntoView({ block: "start" });
    }
  }

  function afterPageChange() {
    syncFrame();
    showPrintButtons();
    syncBackButton();
    syncMainButton();
    openLinkedDetails();
  }

  function setUpTelegram() {
    tg = window.Telegram && window.Telegram.WebApp;
    if (!tg) return;
    tg.ready();
    tg.expand();
    if (tg.BackButton) {
      tg.BackButton.onClick(function () {
        if (window.history.length > 1) window.history.back();
        else window.htmx.ajax("GET", HOME, { target: "#content" });
      });
    }
    if (tg.MainButton) {
      tg.MainButton.onClick(function () {
        if (mainButtonTarget) mainButtonTarget.click();
      });
    }
    afterPageChange();
  }

  function loadTelegram() {
    document.documentElement.classList.add("tg");
    applyLaunchTheme();
    var script = document.createElement("script");
    script.src = TELEGRAM_JS;
    script.async = true;
    script.onload = setUpTelegram;
    document.head.appendChild(script);
  }

  // The page's frame (title, language, demo badge) arrives with each page; see base.html.
  function syncFrame() {
    var frame = document.getElementById("frame");
    if (!frame) return;
    if (frame.dataset.lang) document.documentElement.lang = frame.dataset.lang;
    if (frame.dataset.title) document.title = frame.dataset.title;
  }

  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.detail.target && event.detail.target.id === "content") window.scrollTo(0, 0);
    afterPageChange();
  });
  // htmx updates the address bar after the swap has settled; the BackButton must follow the new address.
  document.addEventListener("htmx:pushedIntoHistory", afterPageChange);
  document.addEventListener("htmx:replacedInHistory", afterPageChange);
  window.addEventListener("popstate", afterPageChange);
  document.addEventListener("htmx:historyRestore", afterPageChange);

  // --- loading feedback: a bar for page changes and actions (not for a block polling quietly), and the
  // MainButton's own spinner when it started the request ---------------------------------------------------
  var pending = 0;
  function loading(delta) {
    pending = Math.max(0, pending + delta);
    document.documentElement.classList.toggle("loading", pending > 0);
  }
  function showsProgress(detail) {
    var verb = (detail.requestConfig && detail.requestConfig.verb) || "get";
    var target = detail.target || (detail.requestConfig && detail.requestConfig.target);
    return verb !== "get" || (target && target.id === "content");
  }
  function startedByMainButton(detail) {
    return !!(mainButtonTarget && detail.elt && (detail.elt === mainButtonTarget || detail.elt.contains(mainButtonTarget)));
  }
  // Counted per request (its XMLHttpRequest), since one element may have two requests out at once; an aborted
  // request ends with loadend too.
  document.addEventListener("htmx:beforeSend", function (event) {
    var xhr = event.detail.xhr;
    if (!xhr || !showsProgress(event.detail)) return;
    var byMainButton = startedByMainButton(event.detail);
    loading(1);
    if (byMainButton && tg && tg.MainButton && tg.MainButton.showProgress) tg.MainButton.showProgress(false);
    xhr.addEventListener("loadend", function () {
      loading(-1);
      if (byMainButton && tg && tg.MainButton && tg.MainButton.hideProgress) tg.MainButton.hideProgress();
    });
  });
  document.addEventListener("htmx:historyCacheMiss", function () { loading(1); });
  document.addEventListener("htmx:historyRestore", function (event) { if (event.detail.cacheMiss) loading(-1); });
  document.addEventListener("htmx:historyCacheMissLoadError", function () { loading(-1); });

  document.addEventListener("htmx:afterRequest", function (event) {
    var verb = (event.detail.requestConfig && event.detail.requestConfig.verb) || "get";
    if (verb !== "get") haptic(event.detail.successful ? "success" : "error");
  });

  // Inside Telegram a native confirm is replaced by Telegram's own popup.
  document.addEventListener("htmx:confirm", function (event) {
    if (!tg || !event.detail.question || !tg.showConfirm) return;
    event.preventDefault();
    tg.showConfirm(event.detail.question, function (ok) {
      if (ok) event.detail.issueRequest(true);
    });
  });

  // --- payments -------------------------------------------------------------------------------------------
  // A Stars invoice opens inside Telegram. The callback is only a hint (the payment counts when the webhook
  // lands), so on "paid" or "pending" the waiting page asks for its status at once instead of in 2 s.
  function openInvoice(url) {
    // Only offered once Telegram's script is there (see the click handler).
    tg.openInvoice(url, function (status) {
      if (status === "paid") haptic("success");
      else if (status === "failed") haptic("error");
      if ((status === "paid" || status === "pending") && document.getElementById("payment_status")) {
        window.htmx.trigger("#payment_status", "refresh");
      }
    });
  }

  // The waiting page's status block says so (HX-Trigger) when the payment has succeeded.
  document.addEventListener("payment-succeeded", function () { haptic("success"); });

  // Receipts: a print button where printing exists (not inside Telegram's WebView). Inside Telegram, the
  // "reopen the app" page offers to close it.
  function showPrintButtons() {
    if (inTelegram) {
      document.querySelectorAll("[data-close-app][hidden]").forEach(function (button) { button.hidden = false; });
    } else if (typeof window.print === "function") {
      document.querySelectorAll("[data-print][hidden]").forEach(function (button) { button.hidden = false; });
    }
  }

  // --- links, copy and share ------------------------------------------------------------------------------
  function copy(text, button) {
    var done = function () {
      haptic("select");
      if (button && button.dataset.copiedLabel) {
        var label = button.textContent;
        button.textContent = button.dataset.copiedLabel;
        setTimeout(function () { button.textContent = label; }, 1500);
      }
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text); done(); });
    } else {
      fallbackCopy(text);
      done();
    }
  }

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* the text stays visible on the page to copy by hand */ }
    document.body.removeChild(area);
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-copy], [data-open-link], [data-share-url], [data-open-invoice], [data-print], [data-close-app]");
    if (!target) return;
    if (target.hasAttribute("data-close-app")) {
      if (tg && tg.close) tg.close();
    } else if (target.hasAttribute("data-open-invoice")) {
      if (tg && tg.openInvoice) {
        event.preventDefault();
        openInvoice(target.href);
      }
      // In a plain browser the link itself (a t.me invoice link) is the way to pay.
    } else if (target.hasAttribute("data-print")) {
      event.preventDefault();
      window.print();
    } else if (target.hasAttribute("data-copy")) {
      event.preventDefault();
      copy(target.dataset.copy, target);
    } else if (target.hasAttribute("data-open-link") && tg && tg.openLink) {
      // Telegram links stay inside Telegram; other outside links open in the system browser, and either way
      // the Mini App stays open.
      event.preventDefault();
      if (target.href.indexOf("https://t.me/") === 0 && tg.openTelegramLink) tg.openTelegramLink(target.href);
      else tg.openLink(target.href);
    } else if (target.hasAttribute("data-share-url")) {
      event.preventDefault();
      var url = target.dataset.shareUrl;
      var text = target.dataset.shareText || "";
      if (tg && tg.openTelegramLink) {
        tg.openTelegramLink("https://t.me/share/url?url=" + encodeURIComponent(url) + "&text=" + encodeURIComponent(text));
      } else if (navigator.share) {
        navigator.share({ url: url, text: text }).catch(function () { /* the user closed the share sheet */ });
      } else {
        copy(url, target);
      }
    }
  });

  // The Telegram Login Widget on the sign-in page, loaded after everything else (see auth/login.html).
  function loadLoginWidget() {
    document.querySelectorAll("[data-telegram-widget]").forEach(function (slot) {
      var script = document.createElement("script");
      script.async = true;
      script.src = slot.dataset.telegramWidget;
      ["telegramLogin", "size", "authUrl", "requestAccess"].forEach(function (key) {
        if (slot.dataset[key]) script.dataset[key] = slot.dataset[key];
      });
      slot.appendChild(script);
    });
  }
  if (document.readyState === "complete") loadLoginWidget();
  else window.addEventListener("load", loadLoginWidget);

  function start() {
    if (inTelegram) loadTelegram();
    bootShell();
    afterPageChange();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
