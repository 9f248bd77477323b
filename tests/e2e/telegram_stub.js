// A stand-in for https://telegram.org/js/telegram-web-app.js: the WebApp object a Telegram client gives the
// Mini App. Like the real script it reads the launch parameters (really signed initData among them) from the
// address's hash, which the Telegram client puts there, and keeps them in sessionStorage for the session's
// later pages. Every call the app makes is recorded in window.__tg so tests can check BackButton, MainButton,
// haptics, popups and links.
(function () {
  "use strict";
  var calls = (window.__tg = []);
  function record(name, value) { calls.push([name, value === undefined ? null : value]); }
  function control(name) {
    var handlers = [];
    var button = {
      isVisible: false,
      isProgressVisible: false,
      text: "",
      show: function () { button.isVisible = true; record(name + ".show"); return button; },
      hide: function () { button.isVisible = false; record(name + ".hide"); return button; },
      setText: function (text) { button.text = text; record(name + ".setText", text); return button; },
      showProgress: function () { button.isProgressVisible = true; record(name + ".showProgress"); return button; },
      hideProgress: function () { button.isProgressVisible = false; record(name + ".hideProgress"); return button; },
      onClick: function (fn) { handlers.push(fn); return button; },
      click: function () { handlers.forEach(function (fn) { fn(); }); },
    };
    return button;
  }
  var params = {};
  try { params = JSON.parse(sessionStorage.getItem("__telegram__initParams") || "{}"); } catch (e) { params = {}; }
  new URLSearchParams(location.hash.slice(1)).forEach(function (value, key) {
    if (key.indexOf("tgWebApp") === 0) params[key] = value;
  });
  sessionStorage.setItem("__telegram__initParams", JSON.stringify(params));
  var theme = {};
  try { theme = JSON.parse(params.tgWebAppThemeParams || "{}"); } catch (e) { theme = {}; }
  Object.keys(theme).forEach(function (key) {
    document.documentElement.style.setProperty("--tg-theme-" + key.replace(/_/g, "-"), theme[key]);
  });
  window.Telegram = {
    WebApp: {
      initData: params.tgWebAppData || "",
      version: params.tgWebAppVersion || "8.0",
      platform: params.tgWebAppPlatform || "android",
      colorScheme: theme.bg_color === "#ffffff" ? "light" : "dark",
      themeParams: theme,
      isVersionAtLeast: function () { return true; },
      ready: function () { record("ready"); },
      expand: function () { record("expand"); },
      BackButton: control("BackButton"),
      MainButton: control("MainButton"),
      HapticFeedback: {
        notificationOccurred: function (kind) { record("haptic", kind); },
        selectionChanged: function () { record("haptic", "selection"); },
        impactOccurred: function (kind) { record("haptic", kind); },
      },
      showConfirm: function (message, callback) { record("showConfirm", message); callback(true); },
      openLink: function (url) { record("openLink", url); },
      openTelegramLink: function (url) { record("openTelegramLink", url); },
    },
  };
})();
