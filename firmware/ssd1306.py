"""A small SSD1306 OLED driver (128x64, I2C) for MicroPython: a framebuf.FrameBuffer whose
`show()` sends the buffer to the panel. The initialisation sequence is the one in the SSD1306
datasheet's application note (charge pump on, horizontal addressing)."""

import framebuf

_INIT = (
    0xAE,  # display off
    0x20, 0x00,  # horizontal addressing
    0x40,  # start line 0
    0xA1,  # segment remap: column 127 is SEG0
    0xA8, 0x3F,  # multiplex 64
    0xC8,  # scan COM63..COM0
    0xD3, 0x00,  # no offset
    0xDA, 0x12,  # COM pins: alternative
    0xD5, 0x80,  # clock
    0xD9, 0xF1,  # pre-charge
    0xDB, 0x30,  # VCOMH
    0x81, 0xCF,  # contrast
    0xA4,  # show the RAM
    0xA6,  # not inverted
    0x8D, 0x14,  # charge pump on
    0xAF,  # display on
)  # fmt: skip


class SSD1306(framebuf.FrameBuffer):
    def __init__(self, i2c, width=128, height=64, addr=0x3C):
        self.i2c = i2c
        self.addr = addr
        self.width = width
        self.height = height
        self.buffer = bytearray(width * height // 8)
        super().__init__(self.buffer, width, height, framebuf.MONO_VLSB)
        for cmd in _INIT:
            self._command(cmd)

    def _command(self, cmd):
        self.i2c.writeto(self.addr, bytes((0x80, cmd)))

    def show(self):
        for cmd in (0x21, 0, self.width - 1, 0x22, 0, self.height // 8 - 1):
            self._command(cmd)
        self.i2c.writeto(self.addr, b"\x40" + self.buffer)
