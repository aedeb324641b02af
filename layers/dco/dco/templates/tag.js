{#- The JS ad tag. Every value goes through |tojs (a JSON literal with <, >, &, U+2028, U+2029 escaped), which
    is safe both in JavaScript source and inside an HTML <script> block. The ad document runs in a sandboxed
    srcdoc iframe without allow-scripts, inserted right after the <script> element that loaded this tag. -#}
(function () {
  "use strict";
  var html = {{ html|tojs }};
  var doc = document;
  var script = doc.currentScript;
  var frame = doc.createElement("iframe");
  frame.setAttribute("title", {{ title|tojs }});
  frame.setAttribute("width", {{ width|tojs }});
  frame.setAttribute("height", {{ height|tojs }});
  frame.setAttribute("scrolling", "no");
  frame.setAttribute("frameborder", "0");
  frame.setAttribute("sandbox", "allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation");
  frame.setAttribute("data-dco-ad", {{ ad_id|tojs }});
  frame.style.border = "0";
  frame.style.display = "block";
  frame.srcdoc = html;
  if (script && script.parentNode) {
    script.parentNode.insertBefore(frame, script.nextSibling);
  } else {
    (doc.body || doc.documentElement).appendChild(frame);
  }
})();
