// Telegram glue. Works in a plain browser too: every Telegram call is guarded, and every feature here has a
// browser equivalent (links, native confirm, clipboard, Web Share).
(function () {
  "use strict";
  var tg = window.Telegram && window.Telegram.WebApp;
  var inTelegram = !!(tg && tg.initData);
  var HOME = "/app";

  function haptic(kind) {
    if (inTelegram && tg.HapticFeedback) {
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
      event.detail.headers["Authorization"] = "tma " + tg.initData;
    }
    var token = csrfToken();
    if (token) event.detail.headers["X-CSRF-Token"] = token;
  });

  // --- Telegram's own controls follow the page that is showing -------------------------------------------
  function syncBackButton() {
    if (!inTelegram || !tg.BackButton) return;
    if (window.location.pathname === HOME) tg.BackButton.hide();
    else tg.BackButton.show();
  }

  var mainButtonTarget = null;
  function syncMainButton() {
    if (!inTelegram || !tg.MainButton) return;
    mainButtonTarget = document.querySelector("#content [data-main-button]");
    if (mainButtonTarget) {
      tg.MainButton.setText(mainButtonTarget.dataset.mainButton);
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
    showPrintButtons();
    syncBackButton();
    syncMainButton();
    openLinkedDetails();
  }

  if (inTelegram) {
    document.documentElement.classList.add("tg");
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
  }

  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.detail.target && event.detail.target.id === "content") window.scrollTo(0, 0);
    afterPageChange();
  });
  // htmx updates the address bar after the swap has settled; the BackButton must follow the new address.
  document.addEventListener("htmx:pushedIntoHistory", afterPageChange);
  document.addEventListener("htmx:replacedInHistory", afterPageChange);
  window.addEventListener("popstate", afterPageChange);

  document.addEventListener("htmx:afterRequest", function (event) {
    var verb = (event.detail.requestConfig && event.detail.requestConfig.verb) || "get";
    if (verb !== "get") haptic(event.detail.successful ? "success" : "error");
  });

  // Inside Telegram a native confirm is replaced by Telegram's own popup.
  document.addEventListener("htmx:confirm", function (event) {
    if (!inTelegram || !event.detail.question || !tg.showConfirm) return;
    event.preventDefault();
    tg.showConfirm(event.detail.question, function (ok) {
      if (ok) event.detail.issueRequest(true);
    });
  });

  // --- payments -------------------------------------------------------------------------------------------
  // A Stars invoice opens inside Telegram. The callback is only a hint (the payment counts when the webhook
  // lands), so on "paid" or "pending" the waiting page asks for its status at once instead of in 2 s.
  function openInvoice(url) {
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

  // Receipts: a print button where printing exists (not inside Telegram's WebView).
  function showPrintButtons() {
    if (inTelegram || typeof window.print !== "function") return;
    document.querySelectorAll("[data-print][hidden]").forEach(function (button) { button.hidden = false; });
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
    var target = event.target.closest("[data-copy], [data-open-link], [data-share-url], [data-open-invoice], [data-print]");
    if (!target) return;
    if (target.hasAttribute("data-open-invoice")) {
      if (inTelegram && tg.openInvoice) {
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
    } else if (target.hasAttribute("data-open-link") && inTelegram && tg.openLink) {
      // Telegram links stay inside Telegram; other outside links open in the system browser, and either way
      // the Mini App stays open.
      event.preventDefault();
      if (target.href.indexOf("https://t.me/") === 0 && tg.openTelegramLink) tg.openTelegramLink(target.href);
      else tg.openLink(target.href);
    } else if (target.hasAttribute("data-share-url")) {
      event.preventDefault();
      var url = target.dataset.shareUrl;
      var text = target.dataset.shareText || "";
      if (inTelegram && tg.openTelegramLink) {
        tg.openTelegramLink("https://t.me/share/url?url=" + encodeURIComponent(url) + "&text=" + encodeURIComponent(text));
      } else if (navigator.share) {
        navigator.share({ url: url, text: text }).catch(function () { /* the user closed the share sheet */ });
      } else {
        copy(url, target);
      }
    }
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { bootShell(); afterPageChange(); });
  } else {
    bootShell();
    afterPageChange();
  }
})();
