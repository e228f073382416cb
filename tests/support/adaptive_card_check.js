// Parse an Adaptive Card with the official renderer (the `adaptivecards` npm package) and print
// every parse and validation event as JSON: {"version": ..., "events": [...]}. Reads the card
// (or a Teams message whose first attachment holds it) from standard input.
"use strict";
const path = require("path");
const AC = require(path.join(__dirname, "..", "..", "node_modules", "adaptivecards", "dist", "adaptivecards.js"));

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  let json = JSON.parse(input);
  if (json.type === "message") {
    json = json.attachments[0].content;
  }
  const card = new AC.AdaptiveCard();
  const context = new AC.SerializationContext();
  card.parse(json, context);
  const events = [];
  for (let i = 0; i < context.eventCount; i++) {
    const e = context.getEventAt(i);
    events.push({ phase: String(e.phase), event: String(e.event), message: e.message });
  }
  for (const e of card.validateProperties().validationEvents) {
    events.push({ phase: "validation", event: String(e.event), message: e.message });
  }
  const texts = [];
  const facts = [];
  (function walk(element) {
    if (!element) { return; }
    if (element instanceof AC.TextBlock && element.text) { texts.push(element.text); }
    if (element instanceof AC.RichTextBlock) {
      const parts = [];
      for (let i = 0; i < element.getInlineCount(); i++) { parts.push(element.getInlineAt(i).text); }
      texts.push(parts.join(""));
    }
    if (element instanceof AC.FactSet) {
      for (const f of element.facts) { facts.push([f.name, f.value]); }
    }
    if (element.getItemCount) {
      for (let i = 0; i < element.getItemCount(); i++) { walk(element.getItemAt(i)); }
    }
  })(card);
  const actions = [];
  for (let i = 0; i < card.getActionCount(); i++) {
    const a = card.getActionAt(i);
    actions.push({ type: a.getJsonTypeName(), title: a.title, url: a.url });
  }
  process.stdout.write(JSON.stringify({ version: card.version.toString(), events, texts, facts, actions }));
});
