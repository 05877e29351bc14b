from tests.firmware import use_firmware_path

use_firmware_path()
