"""The window unit's display (亮身份): who serves at this window, the ticket, and "请评价".

Draws on any MicroPython `framebuf.FrameBuffer` with a `show()` method, 128x64: the SSD1306
driver (ssd1306.py) on the board, a plain FrameBuffer in tests. Chinese characters come from
glyphs.py (16x16, made for the station by tools/fontgen.py); ASCII from framebuf's own 8x8
font; a character with no glyph is drawn as an empty box, so a missing one shows rather than
vanishing. It redraws only when what it shows changes: an I2C transfer of the whole screen
takes about 25 ms at 400 kHz, too long for every pass of the main loop.

  y  0..15  the clerk: name and number, e.g. "张丽 c01"
  y 20..43  the ticket being served, three times the 8x8 font
  y 48..63  the prompt: 请评价 (please rate), 谢谢, 请重试, 暂停服务, or the code being typed as stars
"""

try:
    import framebuf
except ImportError:  # CPython: tools/fontgen.py reads PROMPTS
    framebuf = None

WIDTH = 128
HEIGHT = 64
TICKET_SCALE = 3
CLERK_Y = 0
TICKET_Y = 20
PROMPT_Y = 48

# The unit's LED state -> what the display says (unit.Unit.screen gives the state).
PROMPTS = {"ready": "请评价", "thanks": "谢谢", "error": "请重试", "off": "暂停服务"}


def _glyphs():
    try:
        import glyphs

        return glyphs.GLYPHS
    except ImportError:  # no font made for this unit: Chinese shows as boxes
        return {}


class Screen:
    def __init__(self, fb, font=None):
        self.fb = fb
        self.font = _glyphs() if font is None else font
        self._shown = None
        self._cache = {}

    def show(self, clerk, ticket, prompt):
        """Draw (clerk line, ticket, prompt) if it differs from what is shown."""
        wanted = (clerk, ticket, prompt)
        if wanted == self._shown:
            return
        self._shown = wanted
        self.fb.fill(0)
        self.text(clerk, 0, CLERK_Y)
        self.big(ticket, 0, TICKET_Y, TICKET_SCALE)
        self.text(PROMPTS.get(prompt, prompt), 0, PROMPT_Y)
        self.fb.show()

    def text(self, text, x, y):
        """Mixed text on a 16-pixel line: ASCII 8 wide (centred vertically), Chinese 16 wide."""
        for ch in text:
            if x >= WIDTH:
                return
            if ord(ch) < 0x80:
                self.fb.text(ch, x, y + 4, 1)
                x += 8
                continue
            glyph = self._glyph(ch)
            if glyph is None:
                self.fb.rect(x + 1, y + 1, 14, 14, 1)
            else:
                self.fb.blit(glyph, x, y)
            x += 16

    def big(self, text, x, y, scale):
        """ASCII text at `scale` times the 8x8 font: pixel by pixel from a one-line buffer."""
        width = 8 * len(text)
        if not width:
            return
        small = framebuf.FrameBuffer(bytearray(width), width, 8, framebuf.MONO_VLSB)
        small.text(text, 0, 0, 1)
        for py in range(8):
            for px in range(min(width, (WIDTH - x) // scale)):
                if small.pixel(px, py):
                    self.fb.fill_rect(x + px * scale, y + py * scale, scale, scale, 1)

    def _glyph(self, ch):
        glyph = self._cache.get(ch)
        if glyph is None and ch in self.font:
            glyph = framebuf.FrameBuffer(bytearray(self.font[ch]), 16, 16, framebuf.MONO_HLSB)
            self._cache[ch] = glyph
        return glyph
