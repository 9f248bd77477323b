// A stand-in for https://telegram.org/js/telegram-web-app.js: the WebApp object a Telegram client gives the
// Mini App, carrying really signed initData (injected as window.__initData before this runs). Every call the
// app makes is recorded in window.__tg so tests can check BackButton, MainButton, haptics, popups and links.
(function () {
  "use strict";
  var calls = (window.__tg = []);
  function record(name, value) { calls.push([name, value === undefined ? null : value]); }
  function control(name) {
    var handlers = [];
    var button = {
      isVisible: false,
      text: "",
      show: function () { button.isVisible = true; record(name + ".show"); return button; },
      hide: function () { button.isVisible = false; record(name + ".hide"); return button; },
      setText: function (text) { button.text = text; record(name + ".setText", text); return button; },
      onClick: function (fn) { handlers.push(fn); return button; },
      click: function () { handlers.forEach(function (fn) { fn(); }); },
    };
    return button;
  }
  var theme = { bg_color: "#17212b", text_color: "#f5f5f5", hint_color: "#708499", link_color: "#6ab3f3",
                button_color: "#5288c1", button_text_color: "#ffffff", secondary_bg_color: "#232e3c",
                section_bg_color: "#17212b" };
  Object.keys(theme).forEach(function (key) {
    document.documentElement.style.setProperty("--tg-theme-" + key.replace(/_/g, "-"), theme[key]);
  });
  window.Telegram = {
    WebApp: {
      initData: window.__initData || "",
      version: "8.0",
      platform: "android",
      colorScheme: "dark",
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
