// Telegram glue. Works in a plain browser too: every Telegram call is guarded.
(function () {
  "use strict";
  var tg = window.Telegram && window.Telegram.WebApp;
  var inTelegram = !!(tg && tg.initData);

  if (inTelegram) {
    document.documentElement.classList.add("tg");
    tg.ready();
    tg.expand();
  }

  // Inside Telegram every HTMX request carries the signed initData (no cookies in WebViews).
  document.addEventListener("htmx:configRequest", function (event) {
    if (inTelegram) {
      event.detail.headers["Authorization"] = "tma " + tg.initData;
    }
  });
})();
