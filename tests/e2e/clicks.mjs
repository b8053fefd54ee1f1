// Real mouse clicks in the station's Chromium (the one `lab-recorder record
// --browser` launched), for tests/tests/probe_clicks.rs: connects over CDP,
// waits for the probe to connect, clicks each selector given on the command
// line and gives the probe time to report each click's effect. An argument
// `type:SELECTOR=TEXT` types TEXT into that field instead of clicking.
//
//   node clicks.mjs WS_URL SELECTOR|type:SELECTOR=TEXT...
import {chromium} from 'playwright-core';

const [ws, ...selectors] = process.argv.slice(2);
if (!ws || !selectors.length) {
  console.error('usage: node clicks.mjs WS_URL SELECTOR...');
  process.exit(2);
}
const browser = await chromium.connectOverCDP(ws, {timeout: 10000});
{
  const page = browser.contexts()[0].pages()[0];
  await page.waitForSelector('#ready', {state: 'attached', timeout: 20000});
  await page.waitForTimeout(3000); // the probe connects and syncs its clock
  for (const s of selectors) {
    const typed = /^type:([^=]+)=(.*)$/.exec(s);
    if (typed) {
      await page.fill(typed[1], '', {timeout: 5000});
      await page.type(typed[1], typed[2], {delay: 40});
    } else {
      // force: a disabled button is clicked too, as a participant would.
      await page.click(s, {timeout: 5000, force: true});
    }
    await page.waitForTimeout(1400); // longer than the probe's effect window
  }
  await page.evaluate(() => history.pushState({}, '', '/done'));
  await page.waitForTimeout(500);
}
// Leave the browser to the recorder: exit without closing it.
process.exit(0);
