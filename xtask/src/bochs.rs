//! Booting the kernel's GRUB ISO in Bochs, a second emulator, and judging
//! the run.
//!
//! Bochs checks what QEMU's TCG does not: it keeps global TLB entries
//! across CR3 loads (TCG drops them) and raises #GP on reserved bits in PAE
//! PDPTEs (with the Sandy Bridge model's 40-bit MAXPHYADDR). Debian's build
//! (packages [`PACKAGES`]) has no headless display, so Bochs runs with
//! `display_library: term` under `script`, which gives it a terminal; it is
//! built with the debugger, so `-rc` feeds it a single `c` (continue). It has
//! no exit device and ignores SIGTERM: the kernel's COM1 output goes to a
//! file that is polled until the summary line (or a fatal report) appears,
//! then Bochs is killed with SIGKILL, and the console is judged exactly as
//! a QEMU boot's is ([`qemu::judge_console`]). Its TSC counts emulated
//! instructions, so the kernel's cycle figures are exact instruction counts.
//!
//! The screen terminal. Because Debian's Bochs has the debugger, the `term`
//! display does not draw on the terminal `script` gives it: it opens a
//! pseudo-terminal of its own and prints `Bochs connected to screen
//! "/dev/pts/N"`. Nothing else opens that terminal, so the ncurses output of
//! every VGA refresh piles up in its buffer until Bochs's one simulation
//! thread blocks in `write()` for good and every emulated CPU freezes (more
//! refreshes per guest second on a loaded host, so it struck CI at random).
//! [`ScreenDrain`] opens that terminal as soon as Bochs names it and copies
//! it to `screen.log` for the whole boot. When a console goes quiet anyway,
//! [`stall::report`] says what Bochs is doing on the host.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::kernel::{self, Mode};
use crate::qemu::{self, Expect, Outcome};
use crate::summary::Table;
use crate::{iso, option_value, parse_timeout, prereq, process, stall, verdict};

/// Debian packages: the emulator, its BIOS, the VGA BIOS and the terminal
/// display.
pub const PACKAGES: [&str; 4] = ["bochs", "bochsbios", "vgabios", "bochs-term"];
/// The emulator itself (Debian's `bochs` is a wrapper script around it).
const BOCHS: &str = "bochs-bin";
/// System BIOS (`bochsbios`).
const BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
/// VGA BIOS (`vgabios`).
const VGA_BIOS: &str = "/usr/share/vgabios/vgabios.bin";
/// The terminal display plugin (`bochs-term`), looked for under
/// `/usr/lib/<multiarch>/bochs/plugins` and `/usr/lib/bochs/plugins`.
const TERM_PLUGIN: &str = "libbx_term_gui.so";
/// CPU model for both modes: PSE, PAE, NX, global pages, and a 40-bit
/// physical address width, so PDPTE reserved bits are checked.
pub const CPU: &str = "corei7_sandy_bridge_2600k";
/// A PAE CPU without NX (the P6 family: Pentium III Katmai): the
/// matrix's [`NO_NX_BOOT`] runs on it.
pub const CPU_NO_NX: &str = "p3_katmai";
/// The matrix's boot on a PAE CPU without NX: mode, guest RAM, CPU model.
/// Bochs checks reserved bits, so an XD bit written with EFER.NXE off
/// would fault here.
const NO_NX_BOOT: (Mode, &str, &str) = (Mode::Pae, "128M", CPU_NO_NX);
/// The most host memory Bochs allocates (`megs:` or `memory: host=`);
/// larger guests are backed by Bochs's own swapping.
const MAX_HOST_MIB: u64 = 2048;
/// How long to keep reading the console after the kernel reported its end
/// (a fault report's register lines follow its first line).
const GRACE: Duration = Duration::from_millis(500);
/// How often the console file is read.
const POLL: Duration = Duration::from_millis(100);

/// The boots of `cargo xtask test`'s `bochs` step: both modes at 128 MiB.
pub const TEST_MEM: &str = "128M";

/// The command line of the step's four-CPU boots: 10,000 fuzzed system
/// calls instead of 50,000. Bochs runs its four CPUs in turn, about a
/// million instructions a second each, and 50,000 took six minutes a boot;
/// the QEMU boots of the `qemu` step fuzz 50,000 in each mode, and
/// `cargo xtask bochs` the full count.
pub const TEST_SMP_CMDLINE: &str = "fuzz.syscalls=10000";

/// CPUs of the SMP boots of the `bochs` step (`cpu: count=`), beside the
/// one-CPU boots.
pub const TEST_CPUS: u32 = 4;

/// The `cargo xtask bochs` matrix: mode, guest RAM, kernel command line,
/// CPUs. 2 GiB in both modes, and on four CPUs in both modes; PAE with
/// 8 GiB (RAM above 4 GiB), once more with highmem handed out from 4 GiB up
/// (page tables there); and the kernel's kmap pool under each flush policy.
const MATRIX: [(Mode, &str, Option<&str>, u32); 10] = [
    (Mode::TwoLevel, "2G", None, 1),
    (Mode::Pae, "2G", None, 1),
    (Mode::TwoLevel, "2G", None, TEST_CPUS),
    (Mode::Pae, "2G", None, TEST_CPUS),
    (Mode::Pae, "8G", None, 1),
    (Mode::Pae, "8G", Some("frames=high-first"), 1),
    (Mode::Pae, "2G", Some("kmap.policy=per-page"), 1),
    (Mode::Pae, "2G", Some("kmap.policy=range"), 1),
    (Mode::Pae, "2G", Some("kmap.policy=global"), 1),
    (Mode::Pae, "2G", Some("kmap.policy=accessed-bit"), 1),
];

/// Per-boot limit of the matrix (an 8 GiB boot takes 2-4 minutes).
const MATRIX_TIMEOUT_SECS: u64 = 900;

/// The flush policies, in the order the kernel prints them.
const POLICIES: [&str; 5] = ["per-page", "range", "global", "accessed-bit", "generations"];

/// Makes sure Bochs, its BIOSes and its terminal display are installed;
/// installs them with apt-get as root, otherwise fails with the command.
pub fn ensure() -> Result<(), String> {
    if missing().is_none() {
        return Ok(());
    }
    if !prereq::is_root() {
        return Err(format!(
            "Bochs is missing ({}); install it with:\n    sudo apt-get install -y {}",
            missing().unwrap_or_default(),
            PACKAGES.join(" ")
        ));
    }
    println!(
        "Bochs is missing ({}); installing {PACKAGES:?}",
        missing().unwrap_or_default()
    );
    prereq::apt_install(&PACKAGES)?;
    match missing() {
        None => Ok(()),
        Some(what) => Err(format!(
            "{what} still missing after installing {PACKAGES:?}"
        )),
    }
}

/// What of Bochs is missing, or `None` if it is all there.
fn missing() -> Option<String> {
    let mut missing = Vec::new();
    if !on_path(BOCHS) {
        missing.push(BOCHS.to_string());
    }
    for file in [BIOS, VGA_BIOS] {
        if !Path::new(file).is_file() {
            missing.push(file.to_string());
        }
    }
    if !term_plugin_present() {
        missing.push(TERM_PLUGIN.to_string());
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// Whether `program` is an entry of a `PATH` directory.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Whether the terminal display plugin is installed.
fn term_plugin_present() -> bool {
    let mut dirs = vec![PathBuf::from("/usr/lib/bochs/plugins")];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        dirs.extend(
            entries
                .flatten()
                .map(|entry| entry.path().join("bochs").join("plugins")),
        );
    }
    dirs.iter().any(|dir| dir.join(TERM_PLUGIN).is_file())
}

/// Guest RAM in MiB from a QEMU-style size (`128M`, `8G`, plain MiB).
pub fn mem_mib(size: &str) -> Result<u64, String> {
    let size = qemu::check_mem_size(size)?;
    let digits = size.trim_end_matches(['M', 'G', 'm', 'g']);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("guest RAM `{size}` is too large"))?;
    let mib = if size.ends_with(['G', 'g']) {
        value.checked_mul(1024)
    } else {
        Some(value)
    };
    match mib {
        Some(mib) if mib > 0 => Ok(mib),
        _ => Err(format!("guest RAM `{size}` is out of range")),
    }
}

/// What one `bochsrc` describes.
#[derive(Clone, Debug)]
pub struct Config {
    /// The GRUB ISO, inserted in the primary master CD-ROM drive.
    pub iso: PathBuf,
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// CPUs (`cpu: count=`).
    pub cpus: u32,
    /// CPU model (`cpu: model=`).
    pub cpu: &'static str,
    /// Where COM1 is written.
    pub com1: PathBuf,
    /// Bochs's own log.
    pub log: PathBuf,
}

/// The `bochsrc` for `config`: boot from CD-ROM, COM1 to a file, the
/// terminal display, a triple fault stops Bochs (a panic, fatal) instead of
/// resetting into GRUB again, and RAM above [`MAX_HOST_MIB`] backed by
/// Bochs's swapping (`memory: guest=..., host=...`). The VGA is the PCI
/// `pcivga` (1234:1111, linear framebuffer in BAR0), as QEMU's `-vga std`,
/// for the kernel's write-combining self-test.
pub fn bochsrc(config: &Config) -> String {
    let memory = if config.mem_mib <= MAX_HOST_MIB {
        format!("megs: {}", config.mem_mib)
    } else {
        format!("memory: guest={}, host={MAX_HOST_MIB}", config.mem_mib)
    };
    format!(
        "# Generated by `cargo xtask` for one boot.
{memory}
romimage: file={BIOS}
vgaromimage: file={VGA_BIOS}
cpu: model={cpu}, count={cpus}, reset_on_triple_fault=0
pci: enabled=1, chipset=i440fx, slot1=pcivga
vga: extension=vbe
ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14
ata0-master: type=cdrom, path={iso}, status=inserted
boot: cdrom
com1: enabled=1, mode=file, dev={com1}
display_library: term
clock: sync=none
log: {log}
panic: action=fatal
error: action=report
info: action=report
debug: action=ignore
",
        iso = config.iso.display(),
        cpus = config.cpus,
        cpu = config.cpu,
        com1 = config.com1.display(),
        log = config.log.display(),
    )
}

/// One boot of the kernel's GRUB ISO in Bochs.
#[derive(Clone, Debug)]
pub struct Boot {
    /// Paging mode: the ISO's default menu entry.
    pub mode: Mode,
    /// Guest RAM, QEMU syntax (`128M`, `8G`).
    pub mem: String,
    /// Kernel command line, if any (put on the ISO's menu entries).
    pub cmdline: Option<String>,
    /// CPUs.
    pub cpus: u32,
    /// CPU model ([`CPU`] unless the boot is about another CPU).
    pub cpu: &'static str,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// What counts as success.
    pub expect: Expect,
}

impl Boot {
    /// Label used in output and the summary, e.g. `pae -m 128M (bochs)`.
    pub fn label(&self) -> String {
        let mut label = format!("{} -m {}", self.mode.name(), self.mem);
        if self.cpus > 1 {
            label.push_str(&format!(" -smp {}", self.cpus));
        }
        if self.cpu != CPU {
            label.push_str(&format!(" -cpu {}", self.cpu));
        }
        label.push_str(" (bochs)");
        if let Some(cmdline) = &self.cmdline {
            label.push_str(&format!(" [{cmdline}]"));
        }
        label
    }

    /// Directory name of this boot's files (ISO, bochsrc, logs).
    fn slug(&self) -> String {
        let mut slug = format!("{}-{}", self.mode.name(), self.mem);
        if self.cpus > 1 {
            slug.push_str(&format!("-smp{}", self.cpus));
        }
        if self.cpu != CPU {
            slug.push_str(&format!("-{}", self.cpu));
        }
        if let Some(cmdline) = &self.cmdline {
            for word in cmdline.split_whitespace() {
                slug.push('-');
                slug.extend(word.chars().map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '-'
                    }
                }));
            }
        }
        slug
    }
}

/// How a Bochs run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ending {
    /// The kernel printed its end (summary or fatal report); Bochs killed.
    Finished,
    /// Bochs exited by itself (a panic such as a triple fault, a bad
    /// configuration) before the kernel printed its end.
    Exited,
    /// Nothing ended in time ([`stall::over_time`] says why); Bochs
    /// killed.
    TimedOut(String),
}

/// Whether a Bochs run met `expect`, and why: the console must say so
/// ([`qemu::judge_console`], the same rule as for QEMU) and the kernel must
/// have reached its end; a run that Bochs left early or that timed out
/// fails.
fn judge(expect: Expect, nonce: Option<&str>, ending: &Ending, lines: &[String]) -> (bool, String) {
    let (console_ok, console) = qemu::judge_console(expect, nonce, lines);
    let status = match ending {
        Ending::Finished => "kernel halted; Bochs killed".to_string(),
        Ending::Exited => "Bochs exited before the kernel's end (see its log)".to_string(),
        Ending::TimedOut(why) => format!("TIMEOUT: {why}; Bochs killed"),
    };
    (
        console_ok && *ending == Ending::Finished,
        format!("{console}; {status}"),
    )
}

/// The running `script` and the Bochs process it started; both are killed
/// with SIGKILL when this is dropped (Bochs ignores SIGTERM).
struct Running {
    script: Child,
    bochs: Option<u32>,
}

impl Running {
    /// Finds Bochs: the child of `script` (it runs `exec bochs-bin`).
    fn find_bochs(&mut self) {
        if self.bochs.is_none() {
            self.bochs = child_of(self.script.id());
        }
    }

    /// Whether `script` (and so Bochs) has exited.
    fn exited(&mut self) -> bool {
        matches!(self.script.try_wait(), Ok(Some(_)))
    }

    /// SIGKILLs Bochs, then `script` if it does not follow within 5 s.
    fn kill(&mut self) {
        self.find_bochs();
        if let Some(pid) = self.bochs.take() {
            sigkill(pid);
        }
        let start = Instant::now();
        while !self.exited() {
            if start.elapsed() > Duration::from_secs(5) {
                // Best effort: it may have exited meanwhile.
                let _ = self.script.kill();
                let _ = self.script.wait();
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.exited() {
            self.kill();
        }
    }
}

/// The first process whose parent is `parent`, from `/proc/*/stat`.
fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            let after_comm = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = after_comm.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
}

unsafe extern "C" {
    /// libc's `kill(2)`.
    fn kill(pid: i32, signal: i32) -> i32;
}

/// Sends SIGKILL to process `pid` (one process, ours).
fn sigkill(pid: u32) {
    const SIGKILL: i32 = 9;
    if let Ok(pid) = i32::try_from(pid)
        && pid > 0
    {
        // SAFETY: kill(2) takes plain integers and touches no memory of
        // ours; `pid` is positive, so exactly that one process is signalled.
        unsafe { kill(pid, SIGKILL) };
    }
}

/// The screen terminal Bochs opened, read for the whole boot (see the
/// module docs): its bytes go to `screen.log`, up to [`SCREEN_LOG_MAX`];
/// later ones are read and dropped, so Bochs never blocks on it.
struct ScreenDrain {
    /// The terminal, e.g. `/dev/pts/3`.
    pty: PathBuf,
    /// Bytes read from it so far.
    bytes: Arc<AtomicU64>,
}

/// Most of the screen output kept in `screen.log`.
const SCREEN_LOG_MAX: u64 = 16 << 20;

/// `O_NOCTTY` (Linux): opening the terminal must not make it ours.
const O_NOCTTY: i32 = 0o400;

impl ScreenDrain {
    /// The terminal named in Bochs's console output (`terminal.log`), if it
    /// has printed it yet.
    fn find_pty(terminal_log: &Path) -> Option<PathBuf> {
        let text = std::fs::read_to_string(terminal_log).ok()?;
        screen_pty(&text)
    }

    /// Opens `pty` in raw mode without echo and copies it to `log` on a
    /// thread of its own until Bochs closes it.
    fn start(pty: PathBuf, log: &Path) -> Result<Self, String> {
        // Raw, so no line discipline holds back a long line, and without
        // echo, so nothing is written back towards Bochs. Best effort: the
        // copy below is what keeps Bochs running.
        let _ = Command::new("stty")
            .arg("-F")
            .arg(&pty)
            .args(["raw", "-echo"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let mut input = OpenOptions::new()
            .read(true)
            .custom_flags(O_NOCTTY)
            .open(&pty)
            .map_err(|e| format!("opening Bochs's screen terminal {}: {e}", pty.display()))?;
        let mut output =
            File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let bytes = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&bytes);
        thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            // Ends with EOF or EIO once Bochs (the other side) is gone.
            while let Ok(n @ 1..) = input.read(&mut buf) {
                let before = counter.fetch_add(n as u64, Ordering::Relaxed);
                if before < SCREEN_LOG_MAX {
                    // Best effort: a full disk must not stop the draining.
                    let _ = output.write_all(&buf[..n]);
                }
            }
        });
        Ok(Self { pty, bytes })
    }
}

/// The terminal in Bochs's `Bochs connected to screen "/dev/pts/N"` line.
fn screen_pty(text: &str) -> Option<PathBuf> {
    let rest = &text[text.find("connected to screen \"")? + "connected to screen \"".len()..];
    let path = &rest[..rest.find('"')?];
    path.starts_with("/dev/").then(|| PathBuf::from(path))
}

/// Reads what was appended to `path` since `offset` and returns the new
/// complete lines (escape sequences and carriage returns removed); a
/// partial last line stays in `pending`.
fn read_new_lines(path: &Path, offset: &mut u64, pending: &mut Vec<u8>) -> Vec<String> {
    let mut lines = Vec::new();
    let Ok(mut file) = File::open(path) else {
        return lines;
    };
    if file.seek(SeekFrom::Start(*offset)).is_err() {
        return lines;
    }
    let mut fresh = Vec::new();
    if let Ok(read) = file.read_to_end(&mut fresh) {
        *offset += read as u64;
    }
    pending.extend_from_slice(&fresh);
    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
        let raw: Vec<u8> = pending.drain(..=end).collect();
        lines.push(clean_line(&raw));
    }
    lines
}

/// One console line as text: escape sequences, the newline and carriage
/// returns removed.
fn clean_line(raw: &[u8]) -> String {
    qemu::strip_escapes(&String::from_utf8_lossy(raw))
        .trim_end_matches(['\n', '\r'])
        .replace('\r', "")
}

/// Builds the ISO for `boot`, runs Bochs on it, streams the kernel's COM1
/// output (prefixed with the label) and judges the run. Also returns every
/// console line. `Err` only if Bochs could not be run at all.
pub fn boot(boot: &Boot) -> Result<(Outcome, Vec<String>), String> {
    let dir = kernel::kernel_dir()
        .join("target")
        .join("bochs")
        .join(boot.slug());
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let nonce = verdict::nonce();
    let iso = iso::build(
        &dir.join("boot.iso"),
        boot.mode,
        0,
        Some(&verdict::with_nonce(boot.cmdline.as_deref(), &nonce)),
    )?;
    let config = Config {
        iso,
        mem_mib: mem_mib(&boot.mem)?,
        cpus: boot.cpus,
        cpu: boot.cpu,
        com1: dir.join("com1.log"),
        log: dir.join("bochs.log"),
    };
    let rc = dir.join("bochsrc");
    let debugger = dir.join("debugger.rc");
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    write(&rc, &bochsrc(&config))?;
    write(&debugger, "c\n")?;
    for old in [&config.com1, &config.log] {
        if old.exists() {
            std::fs::remove_file(old).map_err(|e| format!("removing {}: {e}", old.display()))?;
        }
    }
    let tty = dir.join("terminal.log");
    let tty_file = File::create(&tty).map_err(|e| format!("creating {}: {e}", tty.display()))?;
    let tty_err = tty_file
        .try_clone()
        .map_err(|e| format!("opening {}: {e}", tty.display()))?;
    let mut command = Command::new("script");
    command
        .args(["-qfec"])
        .arg(format!(
            "exec {BOCHS} -q -f {} -rc {}",
            rc.display(),
            debugger.display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .stdout(tty_file)
        .stderr(tty_err);
    let label = boot.label();
    println!("$ {}", process::describe(&command));
    let start = Instant::now();
    let script = command
        .spawn()
        .map_err(|e| format!("cannot start script (util-linux) for {BOCHS}: {e}"))?;
    let mut running = Running {
        script,
        bochs: None,
    };

    let mut lines = Vec::new();
    let mut offset = 0;
    let mut pending = Vec::new();
    let mut finished_at: Option<Instant> = None;
    let mut screen: Option<ScreenDrain> = None;
    let mut clocks = stall::Clocks::start(None);
    let mut stall_reported = false;
    let mut starved_reported = false;
    let ending = loop {
        running.find_bochs();
        let exited = running.exited();
        if screen.is_none()
            && let Some(pty) = ScreenDrain::find_pty(&tty)
        {
            screen = Some(ScreenDrain::start(pty, &dir.join("screen.log"))?);
        }
        for line in read_new_lines(&config.com1, &mut offset, &mut pending) {
            println!("[{label}] {line}");
            if finished_at.is_none() && qemu::console_finished(boot.expect, Some(&nonce), &line) {
                finished_at = Some(Instant::now());
            }
            lines.push(line);
            clocks.output(Instant::now());
            stall_reported = false;
            starved_reported = false;
        }
        clocks.sample(running.bochs.and_then(stall::cpu_time));
        let quiet = clocks.quiet_since().elapsed() >= stall::QUIET;
        let over = stall::over_time(clocks.total(), clocks.quiet(), boot.timeout);
        if over.is_none()
            && !starved_reported
            && let Some(notice) = stall::starved_notice(clocks.quiet(), boot.timeout)
        {
            starved_reported = true;
            println!("[{label}] {notice}");
        }
        if finished_at.is_none() && !exited && (over.is_some() || (quiet && !stall_reported)) {
            stall_reported = true;
            let last = last_console_text(&lines, &pending);
            if let Some(pid) = running.bochs {
                for line in stall::report(&label, pid, BOCHS, last.as_deref()) {
                    println!("{line}");
                }
            }
            match &screen {
                Some(drain) => println!(
                    "[{label}]   screen terminal {} drained: {} bytes so far",
                    drain.pty.display(),
                    drain.bytes.load(Ordering::Relaxed)
                ),
                None => println!("[{label}]   Bochs has not named its screen terminal yet"),
            }
        }
        match finished_at {
            Some(at) if exited || at.elapsed() >= GRACE => break Ending::Finished,
            Some(_) => {}
            None if exited => break Ending::Exited,
            None if over.is_some() => {
                let why = over.unwrap_or_default();
                println!("[{label}] TIMEOUT: {why}; killing Bochs");
                break Ending::TimedOut(why);
            }
            None => {}
        }
        thread::sleep(POLL);
    };
    running.kill();
    let elapsed = start.elapsed();
    if ending == Ending::Exited {
        print_log_tail(&label, &config.log);
    }
    let (passed, detail) = judge(boot.expect, Some(&nonce), &ending, &lines);
    println!("[{label}] => {}", if passed { "PASS" } else { "FAIL" });
    let layout = lines
        .iter()
        .filter_map(|line| line.strip_prefix("layout: "))
        .map(str::to_string)
        .collect();
    let outcome = Outcome {
        passed,
        detail,
        elapsed,
        layout,
        soak: qemu::soak_lines(&lines),
    };
    Ok((outcome, lines))
}

/// The kernel's last console text: a partial line (a test that printed
/// its name and has not finished) or the last complete one.
fn last_console_text(lines: &[String], pending: &[u8]) -> Option<String> {
    let partial = clean_line(pending);
    if partial.trim().is_empty() {
        lines.last().cloned()
    } else {
        Some(partial)
    }
}

/// Prints Bochs's panics and errors from its log, for a run it ended.
fn print_log_tail(label: &str, log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let notable: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("p[") || line.contains("e[") || line.contains("PANIC"))
        .collect();
    for line in &notable[notable.len().saturating_sub(10)..] {
        println!("[{label} bochs.log] {line}");
    }
    println!("[{label}] Bochs's log: {}", log.display());
}

/// The `bochs` step of `cargo xtask test`: installs Bochs and the GRUB
/// tools if needed, boots the ISO in both modes at [`TEST_MEM`], adds one
/// row per boot to `table`, and fails if either boot does.
pub fn test_step(timeout: Duration, table: &mut Table) -> Result<(), String> {
    ensure()?;
    if !iso::tools_available(true)? {
        return Err("grub-mkrescue, the i386-pc GRUB modules or xorriso are still missing".into());
    }
    let mut boots: Vec<Boot> = [1, TEST_CPUS]
        .into_iter()
        .flat_map(|cpus| {
            Mode::ALL.into_iter().map(move |mode| Boot {
                mode,
                mem: TEST_MEM.to_string(),
                cmdline: (cpus > 1).then(|| TEST_SMP_CMDLINE.to_string()),
                cpus,
                cpu: CPU,
                timeout,
                expect: Expect::Pass,
            })
        })
        .collect();
    // The watchdog's report of a deliberate hang, on Bochs's own CPUs.
    boots.push(Boot {
        mode: Mode::Pae,
        mem: TEST_MEM.to_string(),
        cmdline: Some(crate::checks::HANG_DEMO.to_string()),
        cpus: 2,
        cpu: CPU,
        timeout,
        expect: Expect::Watchdog,
    });
    let mut failed = Vec::new();
    for boot in &boots {
        println!();
        let (outcome, _) = self::boot(boot)?;
        if !outcome.passed {
            failed.push(boot.label());
        }
        table.push(format!("  {}", boot.label()), outcome);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} Bochs boots failed: {}",
            failed.len(),
            boots.len(),
            failed.join("; ")
        ))
    }
}

/// Options of `cargo xtask bochs`: the matrix, or the boots that `--mode`,
/// `--mem` and `--cmdline` ask for.
#[derive(Debug)]
pub struct MatrixOptions {
    timeout: Duration,
    modes: Option<Vec<Mode>>,
    mem: Option<String>,
    cmdline: Option<String>,
    cpus: Option<u32>,
}

/// Parses the options of `cargo xtask bochs`.
pub fn parse(args: &[String]) -> Result<MatrixOptions, String> {
    let mut options = MatrixOptions {
        timeout: Duration::from_secs(MATRIX_TIMEOUT_SECS),
        modes: None,
        mem: None,
        cmdline: None,
        cpus: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--timeout" => options.timeout = parse_timeout(option_value(arg, &mut args)?)?,
            "--mode" => options.modes = Some(Mode::parse_list(option_value(arg, &mut args)?)?),
            "--mem" => {
                let size = option_value(arg, &mut args)?;
                mem_mib(size)?;
                options.mem = Some(size.clone());
            }
            "--cmdline" => options.cmdline = Some(option_value(arg, &mut args)?.clone()),
            "--smp" => options.cpus = Some(crate::parse_smp(option_value(arg, &mut args)?)?),
            other => return Err(format!("unknown option `{other}` for bochs")),
        }
    }
    Ok(options)
}

/// A boot's time limit: twice `timeout` with more than one CPU. Bochs
/// emulates every CPU in turn, halted ones included, so a 2 GiB PAE boot on
/// four CPUs ran past the 900 s that one CPU needs well under.
fn smp_timeout(timeout: Duration, cpus: u32) -> Duration {
    if cpus > 1 { timeout * 2 } else { timeout }
}

/// The boots `options` ask for: [`MATRIX`] unless a mode, size or command
/// line is given, else one boot per mode (default both, at 2 GiB).
fn boots(options: &MatrixOptions) -> Vec<Boot> {
    if options.modes.is_none()
        && options.mem.is_none()
        && options.cmdline.is_none()
        && options.cpus.is_none()
    {
        let (mode, mem, cpu) = NO_NX_BOOT;
        let no_nx = Boot {
            mode,
            mem: mem.to_string(),
            cmdline: None,
            cpus: 1,
            cpu,
            timeout: options.timeout,
            expect: Expect::Pass,
        };
        return MATRIX
            .iter()
            .map(|&(mode, mem, cmdline, cpus)| Boot {
                mode,
                mem: mem.to_string(),
                cmdline: cmdline.map(str::to_string),
                cpus,
                cpu: CPU,
                timeout: smp_timeout(options.timeout, cpus),
                expect: Expect::Pass,
            })
            .chain([no_nx])
            .collect();
    }
    let modes = options.modes.clone().unwrap_or(Mode::ALL.to_vec());
    modes
        .into_iter()
        .map(|mode| Boot {
            mode,
            mem: options.mem.clone().unwrap_or_else(|| "2G".to_string()),
            cmdline: options.cmdline.clone(),
            cpus: options.cpus.unwrap_or(1),
            cpu: CPU,
            timeout: smp_timeout(options.timeout, options.cpus.unwrap_or(1)),
            expect: Expect::for_cmdline(options.cmdline.as_deref()),
        })
        .collect()
}

/// The cycles per map+unmap the kernel printed for each flush policy (in
/// [`POLICIES`] order), from its `NAME wraps ... N cycles per map+unmap`
/// lines; `None` where a policy's line is missing.
pub fn policy_cycles(lines: &[String]) -> [Option<u64>; 5] {
    let mut cycles = [None; 5];
    for line in lines {
        let mut words = line.split_whitespace();
        let (Some(name), Some("wraps")) = (words.next(), words.next()) else {
            continue;
        };
        let Some(k) = POLICIES.iter().position(|&policy| policy == name) else {
            continue;
        };
        let Some(figure) = line.strip_suffix(" cycles per map+unmap") else {
            continue;
        };
        cycles[k] = figure
            .split_whitespace()
            .next_back()
            .and_then(|n| n.parse().ok());
    }
    cycles
}

/// `cargo xtask bochs`: boots [`MATRIX`] (or the boots asked for), prints the outcomes and the
/// instructions per map+unmap of each flush policy; fails if any boot does.
pub fn run(options: &MatrixOptions) -> Result<(), String> {
    prereq::ensure(false)?;
    ensure()?;
    if !iso::tools_available(true)? {
        return Err("grub-mkrescue, the i386-pc GRUB modules or xorriso are still missing".into());
    }
    let mut table = Table::new("boot");
    let mut figures = Vec::new();
    let mut failures = 0;
    let boots = boots(options);
    for boot in &boots {
        println!();
        let (outcome, lines) = self::boot(boot)?;
        if !outcome.passed {
            failures += 1;
        }
        let pages = if lines
            .iter()
            .any(|line| line.contains(" highmem pages through "))
        {
            "highmem"
        } else {
            "lowmem"
        };
        figures.push((boot.label(), pages, policy_cycles(&lines)));
        table.push(boot.label(), outcome);
    }
    table.print();
    print_cycles(&figures);
    if failures == 0 {
        Ok(())
    } else {
        Err(format!(
            "{failures} of {} Bochs boot(s) failed",
            boots.len()
        ))
    }
}

/// Prints the flush-policy figures: one row per boot, one column per
/// policy.
fn print_cycles(figures: &[(String, &str, [Option<u64>; 5])]) {
    let width = figures
        .iter()
        .map(|(label, _, _)| label.len())
        .chain(["boot".len()])
        .max()
        .unwrap_or(0);
    println!(
        "\ninstructions per map+unmap (Bochs TSC = instructions executed; kmap_flush_policies_under_one_workload)"
    );
    print!("{:width$}  pages   ", "boot");
    for policy in POLICIES {
        print!("{policy:>13}");
    }
    println!();
    println!("{}", "-".repeat(width + 10 + 13 * POLICIES.len()));
    for (label, pages, cycles) in figures {
        print!("{label:width$}  {pages:7} ");
        for figure in cycles {
            match figure {
                Some(n) => print!("{n:>13}"),
                None => print!("{:>13}", "-"),
            }
        }
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|line| line.to_string()).collect()
    }

    fn config(mem_mib: u64) -> Config {
        Config {
            iso: PathBuf::from("/t/boot.iso"),
            mem_mib,
            cpus: 1,
            cpu: CPU,
            com1: PathBuf::from("/t/com1.log"),
            log: PathBuf::from("/t/bochs.log"),
        }
    }

    #[test]
    fn bochsrc_boots_the_iso_with_com1_to_a_file() {
        let rc = bochsrc(&config(128));
        assert!(rc.contains("\nmegs: 128\n"));
        assert!(!rc.contains("memory:"));
        assert!(rc.contains("\nata0-master: type=cdrom, path=/t/boot.iso, status=inserted\n"));
        assert!(rc.contains("\nboot: cdrom\n"));
        assert!(rc.contains("\ncom1: enabled=1, mode=file, dev=/t/com1.log\n"));
        assert!(rc.contains("\ndisplay_library: term\n"));
        assert!(rc.contains("\nlog: /t/bochs.log\n"));
        assert!(rc.contains(&format!("\nromimage: file={BIOS}\n")));
        assert!(rc.contains(&format!("\nvgaromimage: file={VGA_BIOS}\n")));
        assert!(rc.contains("model=corei7_sandy_bridge_2600k"));
        assert!(rc.contains("reset_on_triple_fault=0"));
        assert!(rc.contains("\npci: enabled=1, chipset=i440fx, slot1=pcivga\n"));
    }

    #[test]
    fn bochsrc_backs_large_guests_with_at_most_2_gib_of_host_memory() {
        assert!(bochsrc(&config(2048)).contains("\nmegs: 2048\n"));
        let rc = bochsrc(&config(8192));
        assert!(rc.contains("\nmemory: guest=8192, host=2048\n"));
        assert!(!rc.contains("megs:"));
    }

    #[test]
    fn mem_sizes_convert_to_mib() {
        assert_eq!(mem_mib("128M"), Ok(128));
        assert_eq!(mem_mib("2G"), Ok(2048));
        assert_eq!(mem_mib("8g"), Ok(8192));
        assert_eq!(mem_mib("512"), Ok(512));
        assert!(mem_mib("0M").is_err());
        assert!(mem_mib("1.5G").is_err());
    }

    #[test]
    fn a_log_passes_only_with_a_clean_summary_and_the_kernels_end() {
        let quiet = Ending::TimedOut("no console output for 1 s".into());
        let ok = lines(&["test a ... ok", "3 passed, 0 failed"]);
        assert!(judge(Expect::Pass, None, &Ending::Finished, &ok).0);
        assert!(!judge(Expect::Pass, None, &Ending::Exited, &ok).0);
        assert!(!judge(Expect::Pass, None, &quiet, &ok).0);
        let no_summary = lines(&["test a ... ok", "test b ... "]);
        let (passed, detail) = judge(Expect::Pass, None, &quiet, &no_summary);
        assert!(!passed);
        assert!(detail.contains("no `N passed, N failed` line"), "{detail}");
        assert!(detail.contains("TIMEOUT"), "{detail}");
        let failed = lines(&["test a ... FAILED", "2 passed, 1 failed"]);
        assert!(!judge(Expect::Pass, None, &Ending::Finished, &failed).0);
        let none = lines(&["0 passed, 0 failed"]);
        assert!(!judge(Expect::Pass, None, &Ending::Finished, &none).0);
        let fault = lines(&["test a ... ", "PAGE FAULT at EIP 0xc0100000: ..."]);
        assert!(!judge(Expect::Pass, None, &Ending::Finished, &fault).0);
    }

    #[test]
    fn the_end_of_a_run_is_the_summary_or_a_fatal_report() {
        let end = |line: &str| qemu::console_finished(Expect::Pass, None, line);
        assert!(end("3 passed, 0 failed"));
        assert!(end("2 passed, 1 failed"));
        assert!(end("KERNEL PANIC: at src/main.rs"));
        assert!(end("PAGE FAULT at EIP 0xc0100000: address (CR2) 0x0"));
        assert!(end("DOUBLE FAULT (error code 0x0), handled on ..."));
        assert!(end("EXCEPTION 13 (general protection) at EIP 0xc0100000"));
        assert!(end("BOOT FAILED: no memory map"));
        assert!(!end("test a ... ok"));
        assert!(!end("    call into a `ret`: page fault, error code 0x11"));
    }

    #[test]
    fn console_lines_lose_escapes_and_carriage_returns() {
        let mut offset = 0;
        let mut pending = Vec::new();
        let dir = std::env::temp_dir().join(format!("xtask-bochs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("com1.log");
        std::fs::write(&path, b"\x1b[2Jfirst\r\nsec").unwrap();
        assert_eq!(read_new_lines(&path, &mut offset, &mut pending), ["first"]);
        std::fs::write(&path, b"\x1b[2Jfirst\r\nsecond\n").unwrap();
        assert_eq!(read_new_lines(&path, &mut offset, &mut pending), ["second"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_screen_terminal_is_read_from_bochss_console() {
        let text = "========\nBochs connected to screen \"/dev/pts/7\"\r\nNext at t=0\n";
        assert_eq!(screen_pty(text), Some(PathBuf::from("/dev/pts/7")));
        assert_eq!(screen_pty("Bochs connected to screen \"/dev/pts/"), None);
        assert_eq!(screen_pty("nothing yet"), None);
        assert_eq!(screen_pty("connected to screen \"x\""), None);
    }

    #[test]
    fn the_last_console_text_prefers_an_unfinished_line() {
        let done = lines(&["a", "b"]);
        assert_eq!(last_console_text(&done, b""), Some("b".into()));
        assert_eq!(
            last_console_text(&done, b"test c ... "),
            Some("test c ... ".into())
        );
        assert_eq!(last_console_text(&[], b"  "), None);
    }

    #[test]
    fn policy_figures_are_read_from_the_kernels_lines() {
        let log = lines(&[
            "    per-page      wraps  67  invlpg  8575  range   0  global   0  avoided     0     929 cycles per map+unmap",
            "    range         wraps  67  invlpg     0  range  67  global   0  avoided     0     924 cycles per map+unmap",
            "    accessed-bit  wraps  67  invlpg  4544  range   0  global   0  avoided  4031     931 cycles per map+unmap",
            "    generations   wraps 136  invlpg     0  range   0  global   0  avoided     0  deferred 135    828 cycles per map+unmap",
            "    global pages: CR4.PGE on",
        ]);
        assert_eq!(
            policy_cycles(&log),
            [Some(929), Some(924), None, Some(931), Some(828)]
        );
    }

    #[test]
    fn labels_and_directories_name_the_command_line() {
        let boot = Boot {
            mode: Mode::Pae,
            mem: "8G".to_string(),
            cmdline: Some("frames=high-first kmap.policy=range".to_string()),
            cpus: 1,
            cpu: CPU,
            timeout: Duration::from_secs(1),
            expect: Expect::Pass,
        };
        assert_eq!(
            boot.label(),
            "pae -m 8G (bochs) [frames=high-first kmap.policy=range]"
        );
        assert_eq!(boot.slug(), "pae-8G-frames-high-first-kmap-policy-range");
        let smp = Boot {
            cpus: 4,
            cmdline: None,
            ..boot
        };
        assert_eq!(smp.label(), "pae -m 8G -smp 4 (bochs)");
        assert_eq!(smp.slug(), "pae-8G-smp4");
        assert_eq!(
            smp_timeout(Duration::from_secs(900), 4),
            Duration::from_secs(1800)
        );
        assert_eq!(
            smp_timeout(Duration::from_secs(900), 1),
            Duration::from_secs(900)
        );
        let rc = bochsrc(&Config {
            cpus: 4,
            ..config(128)
        });
        assert!(rc.contains("\ncpu: model="), "{rc}");
        assert!(rc.contains(", count=4, "), "{rc}");
        let no_nx = Boot {
            cpu: CPU_NO_NX,
            cpus: 1,
            ..smp
        };
        assert_eq!(no_nx.label(), "pae -m 8G -cpu p3_katmai (bochs)");
        assert_eq!(no_nx.slug(), "pae-8G-p3_katmai");
        let rc = bochsrc(&Config {
            cpu: CPU_NO_NX,
            ..config(128)
        });
        assert!(rc.contains("\ncpu: model=p3_katmai, count=1, "), "{rc}");
    }
}
