"""The one HTML page of the serving app: pick an adapter, fill its inputs, see base vs adapter answers side by side.

It asks /predict with compare_base (the API's default leaves the base out) and, for generation adapters, with stream
(the text appears as it is made). Behind an API key it asks for the key.

One box per input column of the chosen adapter's dataset (text→SQL: question and table context); a value starting
with [ or { is sent as JSON (multiple choice: the choices list).
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>peftlab serve</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 56rem; margin: 2rem auto; padding: 0 1rem; }
  table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
  th, td { border: 1px solid #ccc; padding: .4rem .6rem; text-align: left; vertical-align: top; }
  textarea { width: 100%; height: 4rem; }
  .answers { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
  .answers pre { white-space: pre-wrap; background: #f6f6f6; padding: .6rem; min-height: 2rem; }
  .error { color: #b00020; }
</style>
</head>
<body>
<h1>peftlab serve</h1>
<p id="base">loading…</p>
<table id="adapters"><thead><tr><th></th><th>adapter</th><th>dataset</th><th>task</th><th>method</th></tr></thead>
<tbody></tbody></table>
<div id="inputs"></div>
<p><button id="ask" type="button">Ask</button> <span id="status"></span></p>
<div class="answers">
  <div><h2>Base model</h2><pre id="base-answer"></pre></div>
  <div><h2>With adapter <span id="chosen"></span></h2><pre id="adapter-answer"></pre></div>
</div>
<script>
const show = (answer) => answer.scores
  ? answer.answer + "\\n" + Object.entries(answer.scores).map(([k, v]) => k + ": " + v.toFixed(3)).join("\\n")
  : answer.answer;

let described = {};

// A server started with an API key answers 401: ask for the key once, keep it for this tab.
async function call(path, options = {}) {
  const key = sessionStorage.getItem("peftlab-key");
  const headers = {...(options.headers || {}), ...(key ? {Authorization: "Bearer " + key} : {})};
  const response = await fetch(path, {...options, headers});
  if (response.status !== 401) return response;
  const given = prompt("This server needs its API key");
  if (!given) return response;
  sessionStorage.setItem("peftlab-key", given);
  return call(path, options);
}

function showInputs(name) {
  const box = document.getElementById("inputs");
  box.innerHTML = "";
  (described[name] ? described[name].inputs : ["text"]).forEach((column) => {
    const label = document.createElement("label");
    label.textContent = column;
    const area = document.createElement("textarea");
    area.dataset.column = column;
    box.append(label, area);
  });
}

async function loadAdapters() {
  const info = await (await call("/adapters")).json();
  document.getElementById("base").textContent = info.base
    ? "Base model: " + info.base.name + " (" + info.base.name_or_path + ")" : "No adapters loaded.";
  const body = document.querySelector("#adapters tbody");
  info.adapters.forEach((a, i) => {
    described[a.name] = a;
    const row = body.insertRow();
    row.innerHTML = `<td><input type="radio" name="adapter" value="${a.name}" ${i ? "" : "checked"}></td>` +
      `<td>${a.name}</td><td>${a.dataset}</td><td>${a.task}</td><td>${a.method}</td>`;
    row.querySelector("input").addEventListener("change", () => showInputs(a.name));
  });
  if (info.adapters.length) showInputs(info.adapters[0].name);
}

const value = (text) => /^\\s*[\\[{]/.test(text) ? JSON.parse(text) : text;

// Generation adapters stream: server-sent events {side, text} as the text is made, then {side, answer}.
async function streamInto(response) {
  const boxes = {adapter: document.getElementById("adapter-answer"), base: document.getElementById("base-answer")};
  boxes.adapter.textContent = boxes.base.textContent = "";
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {done, value} = await reader.read();
    if (done) return null;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.indexOf("\\n\\n")) >= 0) {
      const data = buffer.slice(0, cut).replace(/^data: /, "");
      buffer = buffer.slice(cut + 2);
      if (data === "[DONE]") return null;
      const event = JSON.parse(data);
      if (event.error) return event.error;
      if (event.answer !== undefined) boxes[event.side].textContent = event.answer;
      else boxes[event.side].textContent += event.text;
    }
  }
}

document.getElementById("ask").addEventListener("click", async () => {
  const chosen = document.querySelector("input[name=adapter]:checked");
  const status = document.getElementById("status");
  if (!chosen) { status.textContent = "no adapter loaded"; return; }
  status.textContent = "…";
  status.className = "";
  const fields = {};
  document.querySelectorAll("#inputs textarea").forEach((a) => { fields[a.dataset.column] = value(a.value); });
  const stream = described[chosen.value] && described[chosen.value].task === "generation";
  const response = await call("/predict", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({adapter: chosen.value, fields: fields, compare_base: true, stream: stream}),
  });
  if (!response.ok) { status.textContent = (await response.json()).detail; status.className = "error"; return; }
  document.getElementById("chosen").textContent = chosen.value;
  if (stream) {
    const error = await streamInto(response);
    if (error) { status.textContent = error; status.className = "error"; return; }
  } else {
    const result = await response.json();
    document.getElementById("adapter-answer").textContent = show(result);
    document.getElementById("base-answer").textContent = show(result.base);
  }
  status.textContent = "done";
});

loadAdapters();
</script>
</body>
</html>
"""
