// Renders frames of an exported animation in headless Chromium (Debian's
// /usr/bin/chromium driven by the pinned playwright-core) to PNG files:
//   node web/render_frames.js lottie|svg IN OUTDIR SIZE FPS FRAME [FRAME ...]  (FRAME may be fractional)
// Lottie: lottie-web (pinned, SVG renderer) goToAndStop(frame, true).
// SVG: the document inline, SMIL paused and seeked with svg.setCurrentTime(frame / fps).
// Writes OUTDIR/frame_<n>.png (SIZE x SIZE, white page) and prints one JSON line.
'use strict';
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

async function main() {
  const [kind, input, outdir, sizeArg, fpsArg, ...frameArgs] = process.argv.slice(2);
  if (!['lottie', 'svg'].includes(kind) || !input || !outdir || !frameArgs.length) {
    console.error('usage: render_frames.js lottie|svg IN OUTDIR SIZE FPS FRAME [FRAME ...]');
    process.exit(2);
  }
  const size = parseInt(sizeArg, 10), fps = parseFloat(fpsArg);
  const frames = frameArgs.map((f) => parseFloat(f));  // (a fraction: between two frames)
  fs.mkdirSync(outdir, { recursive: true });
  const userDir = fs.mkdtempSync(path.join(require('os').tmpdir(), 'avz-chromium-'));
  const exe = process.env.CHROMIUM || '/usr/bin/chromium';
  const ctx = await chromium.launchPersistentContext(userDir, {
    executablePath: exe, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--force-color-profile=srgb'],
    viewport: { width: size, height: size }, deviceScaleFactor: 1,
  });
  try {
    const page = ctx.pages()[0] || await ctx.newPage();
    await page.setContent(`<html><body style="margin:0;background:#fff">
      <div id="box" style="width:${size}px;height:${size}px;overflow:hidden"></div></body></html>`);
    const text = fs.readFileSync(input, 'utf8');
    if (kind === 'lottie') {
      await page.addScriptTag({ path: require.resolve('lottie-web/build/player/lottie.min.js') });
      await page.evaluate((data) => {
        window.anim = lottie.loadAnimation({ container: document.getElementById('box'), renderer: 'svg',
          loop: false, autoplay: false, animationData: JSON.parse(data),
          rendererSettings: { preserveAspectRatio: 'xMidYMid meet' } });
      }, text);
      await page.waitForFunction(() => window.anim && window.anim.isLoaded);
    } else {
      await page.evaluate((svg) => {
        const box = document.getElementById('box');
        box.innerHTML = svg;
        const el = box.querySelector('svg');
        el.setAttribute('width', box.style.width);
        el.setAttribute('height', box.style.height);
        el.pauseAnimations();
      }, text);
    }
    const box = await page.$('#box');
    for (const f of frames) {
      await page.evaluate(([kind, f, fps]) => new Promise((resolve) => {
        if (kind === 'lottie') window.anim.goToAndStop(f, true);
        else document.querySelector('#box svg').setCurrentTime(f / fps);
        requestAnimationFrame(() => requestAnimationFrame(resolve));
      }), [kind, f, fps]);
      await box.screenshot({ path: path.join(outdir, `frame_${f}.png`) });
    }
    const version = kind === 'lottie' ? await page.evaluate(() => lottie.version) : null;
    console.log(JSON.stringify({ frames: frames.length, browser: ctx.browser() ? ctx.browser().version() : exe,
                                 lottie: version }));
  } finally {
    await ctx.close();
    fs.rmSync(userDir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
