// The API reference (/docs): /api/v1/openapi.json rendered with the UI's own
// DOM helper, no third-party renderer and nothing fetched from elsewhere.

import { el } from "./dom.js";

const METHODS = ["get", "post", "put", "patch", "delete"];

function security(requirements) {
  if (!requirements || requirements.length === 0) return "none";
  return requirements.map((r) => Object.keys(r).join(" + ") || "anonymous").join(" or ");
}

function parameters(list) {
  if (!list || list.length === 0) return null;
  return el("table", { class: "parameters" },
    el("tr", {}, el("th", { text: "parameter" }), el("th", { text: "in" }), el("th", { text: "schema" }),
      el("th", { text: "" })),
    list.map((p) => el("tr", {},
      el("td", { text: p.name + (p.required ? " *" : "") }), el("td", { text: p.in }),
      el("td", { text: JSON.stringify(p.schema) }), el("td", { text: p.description || "" }))));
}

function body(requestBody) {
  if (!requestBody) return null;
  return el("div", { class: "body" },
    el("h4", { text: `request body${requestBody.required ? "" : " (optional)"}` }),
    Object.entries(requestBody.content).map(([media, { schema }]) =>
      el("div", {}, el("code", { text: media }), el("pre", { text: JSON.stringify(schema, null, 1) }))));
}

function responses(answers) {
  return el("table", { class: "responses" },
    el("tr", {}, el("th", { text: "status" }), el("th", { text: "meaning" }), el("th", { text: "body" })),
    Object.entries(answers).map(([status, answer]) => el("tr", {},
      el("td", { text: status }), el("td", { text: answer.description }),
      el("td", { text: Object.keys(answer.content || {}).join(", ") }))));
}

function operation(path, method, op) {
  return el("section", { class: "operation", id: op.operationId },
    el("h3", {}, el("span", { class: "method", text: op["x-websocket"] ? "WS" : method.toUpperCase() }),
      el("span", { class: "path", text: path })),
    el("p", { text: op.summary || "" }),
    op.description ? el("p", { text: op.description }) : null,
    el("p", { text: `credentials: ${security(op.security)}` }),
    parameters(op.parameters), body(op.requestBody), responses(op.responses));
}

async function main() {
  const root = document.getElementById("docs");
  const status = document.getElementById("docs-status");
  const response = await fetch("/api/v1/openapi.json");
  if (!response.ok) {
    status.textContent = `could not load the API description (${response.status})`;
    return;
  }
  const spec = await response.json();
  const operations = [];
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const method of METHODS) if (item[method]) operations.push(operation(path, method, item[method]));
  }
  const schemes = Object.entries(spec.components.securitySchemes).map(([name, s]) =>
    el("tr", {}, el("td", { text: name }), el("td", { text: s.type }), el("td", { text: s.description || "" })));
  status.remove();
  root.append(
    el("h1", { text: `${spec.info.title} ${spec.info.version}` }),
    el("p", { text: spec.info.description }),
    el("h2", { text: "Credentials" }), el("table", {}, schemes),
    el("h2", { text: `Operations (${operations.length})` }), ...operations,
    el("h2", { text: "Schemas" }),
    ...Object.entries(spec.components.schemas).map(([name, schema]) =>
      el("section", { id: `schema-${name}` }, el("h3", { text: name }),
        el("pre", { text: JSON.stringify(schema, null, 1) }))));
  root.setAttribute("aria-busy", "false");
}

main();
