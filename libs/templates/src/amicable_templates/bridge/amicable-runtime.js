/*
 * Amicable runtime bridge. Keep this file and its <script src="/amicable-runtime.js"> tag in
 * the page (index.html, or the stack's root layout).
 * (Written into every project by Amicable from one source, libs/templates'
 * amicable_templates/bridge/; edits to a project's copy stay in that project.)
 *
 * When the app runs inside the Amicable editor's preview iframe, it reports runtime errors
 * (uncaught errors, unhandled promise rejections, console.error, Vite build errors) and the
 * current path to the editor with postMessage, so the agent can fix errors by itself. In the
 * editor's "Select" mode it outlines the element under the pointer and reports the one clicked
 * (tag, text, a selector, and the `data-amicable-source` file:line the dev build stamps). It
 * only ever talks to the origin named by the `amicableParentOrigin` query parameter, never "*",
 * and only listens to messages from that origin.
 * Outside the editor (no parent frame) it does nothing.
 */
(function () {
  "use strict";
  if (window.parent === window) return;
  var KEY = "amicableParentOrigin";
  var parentOrigin = new URLSearchParams(window.location.search).get(KEY);
  // Remember it across in-app navigations; storage may be blocked in third-party frames.
  try {
    if (parentOrigin) sessionStorage.setItem(KEY, parentOrigin);
    else parentOrigin = sessionStorage.getItem(KEY);
  } catch (e) {
    /* keep what the query said */
  }
  try {
    parentOrigin = parentOrigin ? new URL(parentOrigin).origin : null;
  } catch (e) {
    parentOrigin = null;
  }
  if (!parentOrigin || parentOrigin === "null") return;

  function post(message) {
    try {
      window.parent.postMessage(message, parentOrigin);
    } catch (e) {
      /* the editor went away; nothing to do */
    }
  }

  function text(value, max) {
    var s;
    if (value === undefined || value === null) return undefined;
    if (typeof value === "string") s = value;
    else if (value instanceof Error) s = value.name + ": " + value.message;
    else {
      try {
        s = JSON.stringify(value);
      } catch (e) {
        s = String(value);
      }
    }
    return s.length > max ? s.slice(0, max) : s;
  }

  function report(kind, message, extra) {
    var payload = {
      kind: kind,
      message: text(message, 2000) || "(no message)",
      url: window.location.href.slice(0, 2000),
      ts_ms: Date.now(),
      source: "amicable-runtime-bridge",
    };
    extra = extra || {};
    if (extra.stack) payload.stack = text(extra.stack, 8000);
    if (extra.level) payload.level = extra.level;
    if (extra.args_preview) payload.args_preview = text(extra.args_preview, 4000);
    post({ type: "amicable_runtime_error", payload: payload });
  }

  window.addEventListener("error", function (event) {
    var err = event.error;
    report("window_error", (err && err.message) || event.message, {
      stack: err && err.stack,
      level: "error",
    });
  });

  window.addEventListener("unhandledrejection", function (event) {
    var reason = event.reason;
    report("unhandled_rejection", reason instanceof Error ? reason.message : text(reason, 2000), {
      stack: reason && reason.stack,
      level: "error",
    });
  });

  var originalError = console.error;
  console.error = function () {
    var args = Array.prototype.slice.call(arguments);
    try {
      var first = args[0];
      var stack = first instanceof Error ? first.stack : undefined;
      report("console_error", text(first, 2000), {
        stack: stack,
        level: "error",
        args_preview: args.length > 1 ? text(args.slice(1).map(function (a) {
          return text(a, 500);
        }), 4000) : undefined,
      });
    } catch (e) {
      /* never break the app's logging */
    }
    return originalError.apply(console, args);
  };

  // Paths as the person knows them: "/src/App.tsx", not the sandbox's "/app/src/App.tsx"
  // (or a local sandbox's directory on the host).
  function projectPaths(value) {
    return String(value)
      .replace(/(?:file:\/\/)?(?:\/[^\s'"():]*)?\/sandboxes\/[^\/\s]+\/workspace(?=\/)/g, "")
      .replace(/(^|[\s'"(\[])(?:file:\/\/)?(?:\/@fs)?\/app(?=\/)/g, "$1");
  }

  function rewriteOverlayPaths(root) {
    if (!root || typeof document.createTreeWalker !== "function") return;
    var walker = document.createTreeWalker(root, 4 /* NodeFilter.SHOW_TEXT */);
    var node;
    while ((node = walker.nextNode())) {
      var rewritten = projectPaths(node.nodeValue);
      if (rewritten !== node.nodeValue) node.nodeValue = rewritten;
    }
  }

  // Vite shows build errors (syntax errors, missing imports) in an overlay element.
  function watchViteOverlay() {
    var seen = typeof WeakSet === "function" ? new WeakSet() : null;
    new MutationObserver(function () {
      var overlay = document.querySelector("vite-error-overlay");
      if (!overlay || (seen && seen.has(overlay))) return;
      if (seen) seen.add(overlay);
      var root = overlay.shadowRoot;
      rewriteOverlayPaths(root);
      var message = root && root.querySelector(".message-body");
      var file = root && root.querySelector(".file");
      report("vite_error", message ? message.textContent : "Vite reported a build error", {
        stack: file ? file.textContent : undefined,
        level: "error",
      });
    }).observe(document.documentElement, { childList: true, subtree: true });
  }
  if (document.documentElement) watchViteOverlay();

  function postLocation() {
    post({
      type: "amicable_location",
      path: window.location.pathname + window.location.search.replace(/([?&])amicableParentOrigin=[^&]*&?/, "$1").replace(/[?&]$/, "") + window.location.hash,
    });
  }
  ["pushState", "replaceState"].forEach(function (name) {
    var original = history[name];
    history[name] = function () {
      var result = original.apply(this, arguments);
      postLocation();
      return result;
    };
  });
  window.addEventListener("popstate", postLocation);
  window.addEventListener("hashchange", postLocation);
  window.addEventListener("load", postLocation);

  // --- Select mode: outline the element under the pointer, report the one clicked. ---
  var selecting = false;
  var box = null;

  function cssId(value) {
    return window.CSS && CSS.escape ? CSS.escape(value) : value.replace(/[^\w-]/g, "\\$&");
  }

  // A selector that finds the element again: an id or data-testid where there is one, else
  // nth-of-type steps up to the nearest ancestor that has one (or <body>).
  function selectorOf(el) {
    var steps = [];
    for (var node = el; node && node.nodeType === 1 && node !== document.body; node = node.parentElement) {
      if (node.id && document.querySelectorAll("#" + cssId(node.id)).length === 1) {
        steps.unshift("#" + cssId(node.id));
        return steps.join(" > ");
      }
      var testId = node.getAttribute("data-testid");
      if (testId) {
        steps.unshift(node.tagName.toLowerCase() + '[data-testid="' + testId.replace(/["\\]/g, "\\$&") + '"]');
        return steps.join(" > ");
      }
      var index = 1;
      for (var sib = node.previousElementSibling; sib; sib = sib.previousElementSibling) {
        if (sib.tagName === node.tagName) index += 1;
      }
      steps.unshift(node.tagName.toLowerCase() + ":nth-of-type(" + index + ")");
    }
    steps.unshift("body");
    return steps.join(" > ");
  }

  function outline(el) {
    if (!box) {
      box = document.createElement("div");
      box.setAttribute("data-amicable-select-box", "");
      box.style.cssText =
        "position:fixed;z-index:2147483647;pointer-events:none;border:2px solid #6366f1;" +
        "background:rgba(99,102,241,.12);border-radius:3px;transition:all 60ms ease-out";
      document.documentElement.appendChild(box);
    }
    var r = el.getBoundingClientRect();
    box.style.left = r.left + "px";
    box.style.top = r.top + "px";
    box.style.width = r.width + "px";
    box.style.height = r.height + "px";
    box.style.display = "block";
  }

  function setSelecting(on) {
    selecting = on;
    document.documentElement.style.cursor = on ? "crosshair" : "";
    if (!on && box) box.style.display = "none";
  }

  function picked(el) {
    var stamped = el.closest ? el.closest("[data-amicable-source]") : null;
    var element = { tag: el.tagName.toLowerCase(), selector: text(selectorOf(el), 1000) };
    var words = text((el.innerText || el.textContent || "").replace(/\s+/g, " ").trim(), 500);
    if (words) element.text = words;
    if (stamped) element.source = stamped.getAttribute("data-amicable-source");
    return element;
  }

  document.addEventListener("mouseover", function (event) {
    if (selecting && event.target && event.target.nodeType === 1) outline(event.target);
  }, true);
  // Capture phase: the app's own handlers never see a click meant to pick an element.
  ["mousedown", "mouseup", "click"].forEach(function (name) {
    document.addEventListener(name, function (event) {
      if (!selecting) return;
      event.preventDefault();
      event.stopPropagation();
      if (name === "click" && event.target && event.target.nodeType === 1) {
        setSelecting(false);
        post({ type: "amicable_element_selected", element: picked(event.target) });
      }
    }, true);
  });
  document.addEventListener("keydown", function (event) {
    if (selecting && event.key === "Escape") {
      setSelecting(false);
      post({ type: "amicable_select_cancelled" });
    }
  }, true);

  // The editor asks whether the bridge is present after loads and turns, and turns Select
  // mode on and off. Only the editor's origin is listened to.
  window.addEventListener("message", function (event) {
    if (event.origin !== parentOrigin || event.source !== window.parent || !event.data) return;
    if (event.data.type === "amicable_runtime_probe") {
      post({ type: "amicable_runtime_probe_ack", probe_id: event.data.probe_id });
    } else if (event.data.type === "amicable_select_mode") {
      setSelecting(event.data.enabled === true);
    }
  });
})();
