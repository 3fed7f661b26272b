// The cluster page: fetches /api/cluster/status every couple of seconds and draws the
// members, the partition → owner map (colour: owner, pattern: state) and the lag.
// Everything shown comes from the group (URLs included), so it is set as text only.
(function () {
  "use strict";

  const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948",
    "#9c755f", "#ff9da7", "#86bcb6", "#d4a6c8"];
  const STATES = {
    ready: "ready",
    restoring: "restoring",
    moving: "moving to its owner",
    unowned: "no owner",
    unreachable: "owner unreachable",
    not_serving: "owner not serving",
  };
  const root = document.getElementById("cluster");
  const statusUrl = root.dataset.statusUrl;
  const every = Number(root.dataset.refreshMs) || 2000;
  const byId = (id) => document.getElementById(id);

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (name === "style") {
        // setProperty: custom properties (--owner) too
        for (const [property, v] of Object.entries(value)) node.style.setProperty(property, v);
      } else {
        node.setAttribute(name, value);
      }
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : String(child));
      }
    }
    return node;
  }

  function shortUrl(url) {
    return url ? url.replace(/^https?:\/\//, "") : "—";
  }

  function colours(members) {
    const urls = members.map((m) => m.url).sort();
    return new Map(urls.map((url, i) => [url, PALETTE[i % PALETTE.length]]));
  }

  function number(value) {
    return value === null || value === undefined ? "—" : value.toLocaleString("en");
  }

  function totalLag(partition) {
    const lags = Object.values(partition.namespaces).map((ns) => ns.lag);
    return lags.some((lag) => lag === null) ? null : lags.reduce((a, b) => a + b, 0);
  }

  function drawSummary(status) {
    const count = status.partitions.length;
    const unready = status.unready.length;
    const summary = byId("summary");
    summary.className = "pill " + (unready ? "pill-bad" : "pill-good");
    summary.textContent = unready
      ? `${unready} of ${count} partitions without a ready owner: ${status.unready.join(", ")}`
      : `all ${count} partitions served`;
    const source = status.source === "kafka" ? "Kafka" : "this instance (Kafka did not answer)";
    byId("group").textContent = `group ${status.group} · ${status.group_state || "state unknown"}` +
      ` · generation ${number(status.generation)} · owners from ${source}`;
    byId("updated").textContent = `· updated ${new Date().toLocaleTimeString("en-GB")}`;
  }

  function drawMembers(status, colour) {
    const cards = status.members.map((member) => {
      const alive = member.answered && member.consumer_alive && member.lease;
      const facts = member.answered
        ? [
            el("span", {class: alive ? "ok" : "bad"},
              member.consumer_alive ? (member.lease ? "serving" : "no lease") : "consumer down"),
            el("span", {}, `generation ${number(member.generation)}`),
            el("span", {}, `${member.partitions.length} partitions`),
            member.restoring.length
              ? el("span", {class: "warn"}, `restoring ${member.restoring.join(", ")}`) : null,
          ]
        : [el("span", {class: "bad"}, member.reason)];
      return el("article", {class: "member"},
        el("i", {class: "swatch", style: {background: colour.get(member.url) || "#999"}}),
        el("div", {},
          el("strong", {}, shortUrl(member.url)),
          el("p", {class: "facts"}, ...facts),
          member.last_error ? el("p", {class: "bad small"}, member.last_error) : null));
    });
    byId("members").replaceChildren(...(cards.length ? cards : [el("p", {class: "bad"}, "no members")]));
  }

  function drawMap(status, colour) {
    const tiles = status.partitions.map((p) => {
      const lag = totalLag(p);
      return el("div", {
          class: `tile state-${p.state}`,
          style: {"--owner": colour.get(p.owner) || "#c8ccd2"},
          title: `partition ${p.partition}: ${STATES[p.state]}` + (p.reason ? ` (${p.reason})` : ""),
          "data-partition": p.partition,
          "data-state": p.state,
        },
        el("span", {class: "number"}, p.partition),
        el("span", {class: "owner"}, shortUrl(p.owner)),
        el("span", {class: "state"}, STATES[p.state]),
        el("span", {class: "tile-lag"}, lag === null ? "lag —" : `lag ${number(lag)}`));
    });
    byId("map").replaceChildren(...tiles);
    const legend = Object.entries(STATES).map(([state, text]) =>
      el("li", {}, el("i", {class: `tile-key state-${state}`}), text));
    byId("legend").replaceChildren(...legend);
  }

  // The owner said nothing: the applied offset shown is the group's committed one.
  function committed(figures) {
    return figures.from === "committed" && figures.applied !== null;
  }

  function lagCell(figures, widest) {
    const width = figures.lag ? Math.max(4, (100 * figures.lag) / widest) : 0;
    return el("td", {class: "lag-cell"},
      el("div", {class: "track"}, el("div", {class: "fill", style: {width: `${width}%`}})),
      el("span", {class: "figures"},
        `${number(figures.lag)} · ${number(figures.applied)}${committed(figures) ? "*" : ""}` +
        ` / ${number(figures.end)}`));
  }

  function drawLag(status, colour) {
    const head = [el("th", {}, "partition"), el("th", {}, "owner"), el("th", {}, "state")]
      .concat(status.namespaces.map((ns) => el("th", {}, `${ns}: lag · applied / end`)));
    byId("lag-head").replaceChildren(...head);
    const lags = status.partitions.flatMap((p) => Object.values(p.namespaces).map((f) => f.lag || 0));
    const widest = Math.max(1, ...lags);
    const rows = status.partitions.map((p) => el("tr", {"data-partition": p.partition},
      el("td", {class: "num"}, p.partition),
      el("td", {}, el("i", {class: "swatch small", style: {background: colour.get(p.owner) || "#c8ccd2"}}),
        shortUrl(p.owner)),
      el("td", {class: `state-text state-${p.state}`}, STATES[p.state]),
      ...status.namespaces.map((ns) => lagCell(p.namespaces[ns], widest))));
    byId("lag-rows").replaceChildren(...rows);
    const starred = status.partitions.some((p) => Object.values(p.namespaces).some(committed));
    byId("lag-note").hidden = !starred;
  }

  function draw(status) {
    const colour = colours(status.members);
    drawSummary(status);
    drawMembers(status, colour);
    drawMap(status, colour);
    drawLag(status, colour);
    root.dataset.generation = status.generation;
    root.dataset.refreshes = String(Number(root.dataset.refreshes || 0) + 1);
  }

  function showProblem(message) {
    const problem = byId("problem");
    problem.hidden = !message;
    problem.textContent = message ? `Could not refresh: ${message}` : "";
  }

  async function refresh() {
    try {
      const answer = await fetch(statusUrl, {
        headers: {Accept: "application/json"}, credentials: "same-origin", cache: "no-store",
      });
      if (!answer.ok) throw new Error(`${statusUrl} answered ${answer.status}`);
      draw(await answer.json());
      showProblem(null);
    } catch (error) {
      showProblem(error.message);
    } finally {
      setTimeout(refresh, every);
    }
  }

  refresh();
})();
