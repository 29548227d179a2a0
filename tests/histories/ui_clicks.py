"""Drive the Temporal UI in headless Chromium (DevTools protocol over a stdlib websocket) and take screenshots:
how docs/img/send-update-*.png, case-resolved-in-ui.png and order-cancelled-in-ui.png were made.

    python tests/histories/ui_clicks.py URL OUT.png STEP...

Steps: `mouse:<JS expression giving an element>` (a real click at its centre), `js:<JS>`, `type:<text>` (into the
focused field), `sleep:<s>`, `shot:<file>`, `menu?` / `fields?` (print what is visible). See docs/ops.md for the
steps used ("More Actions" -> "Send an Update" -> name -> data -> Submit).
"""
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request


class WS:
    def __init__(self, url: str) -> None:
        assert url.startswith("ws://")
        hostport, path = url[5:].split("/", 1)
        host, port = hostport.split(":")
        self.s = socket.create_connection((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += self.s.recv(4096)
        self.rest = buf.split(b"\r\n\r\n", 1)[1]
        self.n = 0

    def _recv(self, k: int) -> bytes:
        while len(self.rest) < k:
            self.rest += self.s.recv(1 << 20)
        out, self.rest = self.rest[:k], self.rest[k:]
        return out

    def send(self, obj: dict) -> None:
        data = json.dumps(obj).encode()
        head = bytes([0x81])
        n = len(data)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self) -> dict:
        payload = b""
        while True:
            b1, b2 = self._recv(2)
            n = b2 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._recv(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._recv(8))[0]
            payload += self._recv(n)
            if b1 & 0x80:
                return json.loads(payload)

    def call(self, method: str, **params) -> dict:
        self.n += 1
        self.send({"id": self.n, "method": method, "params": params})
        while True:
            msg = self.recv()
            if msg.get("id") == self.n:
                return msg.get("result", msg)


CLICK = """
(() => {
  const want = %s;
  const els = [...document.querySelectorAll('button, a, [role=menuitem], li, span, div')];
  const el = els.find(e => e.innerText && e.innerText.trim() === want && e.offsetParent !== null);
  if (!el) return 'not found: ' + want;
  (el.closest('button, a, [role=menuitem], li') || el).click();
  return 'clicked ' + want;
})()
"""

TYPE = """
(() => {
  const fields = [...document.querySelectorAll('input, textarea, [contenteditable=true]')].filter(e => e.offsetParent !== null);
  return fields.map(f => (f.tagName + ' ' + (f.id||'') + ' ' + (f.placeholder||'') + ' ' + (f.getAttribute('aria-label')||''))).join(' | ');
})()
"""


def main() -> None:
    url, out, *clicks = sys.argv[1:]
    port = 9333
    profile = tempfile.mkdtemp()
    chrome = subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                               "--no-first-run", "--disable-background-networking", "--disable-component-update",
                               "--disable-sync", f"--user-data-dir={profile}", "--window-size=1600,1000",
                               f"--remote-debugging-port={port}", "about:blank"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(60):
            try:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
                page = next(t for t in targets if t["type"] == "page")
                break
            except Exception:
                time.sleep(0.5)
        ws = WS(page["webSocketDebuggerUrl"])
        ws.call("Emulation.setDeviceMetricsOverride", width=1600, height=1000, deviceScaleFactor=1, mobile=False)
        ws.call("Page.navigate", url=url)
        time.sleep(12)
        for label in clicks:
            if label.startswith("sleep:"):
                time.sleep(float(label[6:]))
                continue
            if label == "menu?":
                print(ws.call("Runtime.evaluate", expression="[...document.querySelectorAll('[role=menuitem], [role=menu] *, li')].filter(e=>e.offsetParent!==null).map(e=>(e.innerText||'').trim()).filter(t=>t && t.length<40).slice(0,40).join(' | ')", returnByValue=True))
                continue
            if label.startswith("js:"):
                print(ws.call("Runtime.evaluate", expression=label[3:], returnByValue=True))
                time.sleep(3)
                continue
            if label.startswith("mouse:"):
                expr = "(()=>{const e=(" + label[6:] + "); if(!e) return null; e.scrollIntoView({block:'center'}); const r=e.getBoundingClientRect(); return [r.x+r.width/2, r.y+r.height/2]})()"
                xy = ws.call("Runtime.evaluate", expression=expr, returnByValue=True).get("result", {}).get("value")
                print("mouse", xy)
                if xy:
                    for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
                        ws.call("Input.dispatchMouseEvent", type=kind, x=xy[0], y=xy[1], button="left", clickCount=1)
                time.sleep(2)
                continue
            if label.startswith("type:"):
                ws.call("Input.insertText", text=label[5:])
                time.sleep(1)
                continue
            if label.startswith("shot:"):
                shot = ws.call("Page.captureScreenshot", format="png")
                open(label[5:], "wb").write(base64.b64decode(shot["data"]))
                print("wrote", label[5:])
                continue
            if label == "fields?":
                print(ws.call("Runtime.evaluate", expression=TYPE, returnByValue=True))
                continue
            print(ws.call("Runtime.evaluate", expression=CLICK % json.dumps(label), returnByValue=True)
                  .get("result", {}).get("value"))
            time.sleep(3)
        shot = ws.call("Page.captureScreenshot", format="png")
        open(out, "wb").write(base64.b64decode(shot["data"]))
        print("wrote", out)
    finally:
        chrome.kill()


if __name__ == "__main__":
    main()
