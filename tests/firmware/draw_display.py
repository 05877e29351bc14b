"""Run under the MicroPython unix port: draw the window unit's display into a plain framebuffer
and print it as hex (`micropython draw_display.py FIRMWARE_DIR GLYPHS_DIR CLERK TICKET PROMPT`)."""

import binascii
import sys

sys.path.insert(0, sys.argv[2])
sys.path.insert(0, sys.argv[1])

import framebuf
from display import HEIGHT, WIDTH, Screen


class Panel(framebuf.FrameBuffer):
    """What ssd1306.SSD1306 is, without the I2C: the buffer and a show() that counts."""

    def __init__(self):
        self.buffer = bytearray(WIDTH * HEIGHT // 8)
        self.shows = 0
        super().__init__(self.buffer, WIDTH, HEIGHT, framebuf.MONO_VLSB)

    def show(self):
        self.shows += 1


panel = Panel()
screen = Screen(panel)
screen.show(sys.argv[3], sys.argv[4], sys.argv[5])
screen.show(sys.argv[3], sys.argv[4], sys.argv[5])  # unchanged: not sent to the panel again
print("shows", panel.shows)
print(binascii.hexlify(panel.buffer).decode())
