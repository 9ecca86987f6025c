/**
 * Line charts as one standalone SVG file, for the soak report: panels stacked vertically,
 * each with its own y scale, a shared x axis in minutes, and a legend per panel. No fonts,
 * no scripts; text is escaped.
 *
 * @module
 */

/** One line of a panel. */
export interface Series {
  name: string;
  color: string;
  /** y values, one per x. */
  values: number[];
}

/** One panel. */
export interface Panel {
  title: string;
  unit: string;
  series: Series[];
}

const esc = (s: string) =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** A readable number: 1234 → "1.2k". */
export function short(n: number): string {
  const a = Math.abs(n);
  if (a >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(n / 1e3).toFixed(0)}k`;
  if (a >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

/** Renders `panels` over x values `xs` (minutes since the start). */
export function lineChart(xs: number[], panels: Panel[], width = 900, panelHeight = 170): string {
  const padL = 60;
  const padR = 180;
  const padT = 28;
  const gap = 34;
  const plotW = width - padL - padR;
  const height = panels.length * (panelHeight + gap) + 20;
  const xMax = Math.max(1e-9, ...xs);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
  ];
  panels.forEach((p, i) => {
    const top = i * (panelHeight + gap) + padT;
    const plotH = panelHeight - padT;
    const all = p.series.flatMap((s) => s.values).filter(Number.isFinite);
    const yMax = Math.max(1e-9, ...all) * 1.1;
    const x = (v: number) => padL + (v / xMax) * plotW;
    const y = (v: number) => top + plotH - (v / yMax) * plotH;
    out.push(
      `<text x="${padL}" y="${top - 8}" font-size="13" font-weight="bold">` +
        `${esc(p.title)} (${esc(p.unit)})</text>`,
      `<line x1="${padL}" y1="${top + plotH}" x2="${padL + plotW}" y2="${top + plotH}" ` +
        `stroke="#8a93a3"/>`,
      `<line x1="${padL}" y1="${top}" x2="${padL}" y2="${top + plotH}" stroke="#8a93a3"/>`,
    );
    for (const f of [0, 0.5, 1]) {
      const v = (yMax / 1.1) * f;
      out.push(
        `<text x="${padL - 6}" y="${y(v) + 4}" text-anchor="end" fill="#555">${short(v)}</text>`,
        `<line x1="${padL}" y1="${y(v)}" x2="${padL + plotW}" y2="${y(v)}" stroke="#e6e9ef"/>`,
      );
    }
    for (let m = 0; m <= xMax; m += Math.max(1, Math.ceil(xMax / 10))) {
      out.push(
        `<text x="${x(m)}" y="${top + plotH + 14}" text-anchor="middle" fill="#555">${m}m</text>`,
      );
    }
    p.series.forEach((s, k) => {
      // A gap (NaN: nothing measured in that interval) breaks the line.
      const runs: string[][] = [[]];
      s.values.forEach((v, j) => {
        if (Number.isFinite(v)) runs.at(-1)!.push(`${x(xs[j]!).toFixed(1)},${y(v).toFixed(1)}`);
        else if (runs.at(-1)!.length) runs.push([]);
      });
      for (const run of runs.filter((r) => r.length)) {
        out.push(
          `<polyline fill="none" stroke="${s.color}" stroke-width="1.6" points="${
            run.join(" ")
          }"/>`,
        );
      }
      out.push(
        `<rect x="${padL + plotW + 14}" y="${top + k * 16}" width="10" height="10" ` +
          `fill="${s.color}"/>`,
        `<text x="${padL + plotW + 30}" y="${top + k * 16 + 9}">${esc(s.name)}</text>`,
      );
    });
  });
  out.push("</svg>");
  return out.join("\n");
}
