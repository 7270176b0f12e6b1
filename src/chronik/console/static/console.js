// The chronik console's one script: the API token a user typed in (kept for this tab
// only, in sessionStorage) goes with every request htmx makes, as the API's bearer token.
// Links and forms are boosted (hx-boost on <body>), so following them sends it too.
(function () {
  "use strict";
  var KEY = "chronik-console-token";
  document.addEventListener("htmx:configRequest", function (event) {
    var token = sessionStorage.getItem(KEY);
    if (token) {
      event.detail.headers["Authorization"] = "Bearer " + token;
    }
  });
  // A boosted link (or GET form) whose answer is an error: show it as the browser would.
  document.addEventListener("htmx:responseError", function (event) {
    var detail = event.detail;
    if (detail.boosted && detail.requestConfig && detail.requestConfig.verb === "get") {
      window.location.href = detail.pathInfo.finalRequestPath || detail.pathInfo.requestPath;
    }
  });
  // The header (and its token form) is replaced by every boosted navigation: listen on
  // the document, so the form found at the moment of the submit is the one handled.
  function placeholder(input) {
    if (sessionStorage.getItem(KEY)) input.placeholder = "token set for this tab";
  }
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form || form.id !== "token-form") return;
    event.preventDefault();
    var input = form.querySelector("input");
    if (input.value) sessionStorage.setItem(KEY, input.value);
    else sessionStorage.removeItem(KEY);
    input.value = "";
    input.placeholder = "";
    placeholder(input);
  }, true);
  function mark() {
    var input = document.querySelector("#token-form input");
    if (input) placeholder(input);
  }
  document.addEventListener("DOMContentLoaded", mark);
  document.addEventListener("htmx:afterSettle", mark);
})();
