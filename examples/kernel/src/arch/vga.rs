//! The early VGA console: the 80x25 text buffer at physical 0xB8000, reached
//! through the fixmap slot `VGA_CONSOLE` (mapped uncached by
//! [`crate::mm::early_fixmap`] before any allocator exists).
//!
//! Serial stays the main console; everything printed is mirrored here. Row 0
//! holds a banner written once at boot, which the fixmap self-test reads
//! back after the fixmap handover; rows 1..25 scroll.

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use volatile::VolatilePtr;

const COLUMNS: usize = 80;
const ROWS: usize = 25;
/// Light grey on blue.
const ATTRIBUTE: u16 = 0x1F00;
/// Yellow on blue, for the banner.
const BANNER_ATTRIBUTE: u16 = 0x1E00;

/// Virtual address of the buffer once the console is on (0 before).
static BUFFER: AtomicUsize = AtomicUsize::new(0);

/// Cursor position in the scrolling part.
struct Cursor {
    row: usize,
    column: usize,
}

static CURSOR: spin::Mutex<Cursor> = spin::Mutex::new(Cursor { row: 1, column: 0 });

/// The text cell `index` of the buffer at `base`.
fn cell(base: usize, index: usize) -> VolatilePtr<'static, u16> {
    debug_assert!(index < COLUMNS * ROWS);
    // SAFETY: `base` is the fixmap address of the VGA text buffer (set by
    // `start`, whose caller mapped it), `index` is inside its 80x25 cells,
    // and the buffer is device memory no Rust object refers to.
    unsafe { VolatilePtr::new(NonNull::new_unchecked((base as *mut u16).add(index))) }
}

/// The banner cell encoding of `byte` (row 0).
pub fn banner_cell(byte: u8) -> u16 {
    BANNER_ATTRIBUTE | u16::from(byte)
}

/// Turns the console on at `base`: clears the screen and writes `banner`
/// on row 0.
///
/// # Safety
/// `base` must map the VGA text buffer (physical 0xB8000) writable for the
/// rest of the kernel's life.
pub unsafe fn start(base: usize, banner: &str) {
    for index in 0..COLUMNS * ROWS {
        cell(base, index).write(ATTRIBUTE | u16::from(b' '));
    }
    for (index, byte) in banner.bytes().take(COLUMNS).enumerate() {
        cell(base, index).write(banner_cell(byte));
    }
    BUFFER.store(base, Ordering::Release);
}

/// Row 0 as it is in the buffer now (`None` before the console is on).
pub fn banner_row() -> Option<[u16; COLUMNS]> {
    let base = BUFFER.load(Ordering::Acquire);
    (base != 0).then(|| core::array::from_fn(|i| cell(base, i).read()))
}

/// Writes `text` to the scrolling rows, if the console is on. Never waits:
/// a fault handler printing while the console is busy skips the mirror.
pub fn mirror(args: fmt::Arguments<'_>) {
    let base = BUFFER.load(Ordering::Acquire);
    if base == 0 {
        return;
    }
    if let Some(mut cursor) = CURSOR.try_lock() {
        let mut writer = Writer {
            base,
            cursor: &mut cursor,
        };
        // The writer never fails.
        let _ = fmt::Write::write_fmt(&mut writer, args);
    }
}

struct Writer<'a> {
    base: usize,
    cursor: &'a mut Cursor,
}

impl Writer<'_> {
    fn newline(&mut self) {
        self.cursor.column = 0;
        if self.cursor.row + 1 < ROWS {
            self.cursor.row += 1;
            return;
        }
        for index in 2 * COLUMNS..ROWS * COLUMNS {
            let value = cell(self.base, index).read();
            cell(self.base, index - COLUMNS).write(value);
        }
        for index in (ROWS - 1) * COLUMNS..ROWS * COLUMNS {
            cell(self.base, index).write(ATTRIBUTE | u16::from(b' '));
        }
    }
}

impl fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            match byte {
                b'\n' => self.newline(),
                b'\r' => self.cursor.column = 0,
                _ => {
                    if self.cursor.column == COLUMNS {
                        self.newline();
                    }
                    let printable = if byte.is_ascii_graphic() || byte == b' ' {
                        byte
                    } else {
                        b'?'
                    };
                    let index = self.cursor.row * COLUMNS + self.cursor.column;
                    cell(self.base, index).write(ATTRIBUTE | u16::from(printable));
                    self.cursor.column += 1;
                }
            }
        }
        Ok(())
    }
}
