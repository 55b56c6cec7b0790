"""DKMS: `make dkms-install` builds vmcoh.ko with Debian's dkms for every kernel whose headers are
installed, each stock kernel of the matrix then boots and `modprobe vmcoh` loads the installed
module (not the build tree's), and `make dkms-remove` takes it all out again.

It installs into the host's /lib/modules, which the guests see: it needs root, as
`make dkms-install` does.  The debug kernels are not installed kernels, and have no
/lib/modules of their own to install into.
"""

import glob
import os
import subprocess

import pytest

from conftest import KERNELS, ROOT, STOCK_KERNELS, VMRUN, explain, vmrun

VERSION = "0.0test"  # not a version a user would install
pytestmark = pytest.mark.vm


def release_of(kernel):
    """The release vmrun boots for a stock kernel, e.g. 6.1 -> 6.1.0-57-amd64."""
    return subprocess.run([str(VMRUN), "--kernel", kernel, "--print-release"],
                          capture_output=True, text=True, check=True).stdout.strip()


def installed_modules():
    return sorted(glob.glob("/lib/modules/*/updates/dkms/vmcoh.ko*"))


def make(target):
    return subprocess.run(["make", "-C", str(ROOT), target, f"VERSION={VERSION}"],
                          capture_output=True, text=True, timeout=900)


@pytest.fixture
def dkms_installed():
    if os.geteuid() != 0:
        pytest.skip("make dkms-install writes /usr/src and /lib/modules: needs root")
    proc = make("dkms-install")
    try:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        yield proc.stdout
    finally:
        removed = make("dkms-remove")
        assert removed.returncode == 0, removed.stdout[-3000:] + removed.stderr[-3000:]
        assert not installed_modules(), "make dkms-remove left modules behind"
        assert not glob.glob("/usr/src/vmcoh-*"), "make dkms-remove left sources behind"


def test_dkms_installs_for_every_kernel_and_modprobe_loads_it(built, dkms_installed):
    status = subprocess.run(["dkms", "status", "vmcoh"], capture_output=True, text=True).stdout
    print(status)
    kernels = [k for k in STOCK_KERNELS if k in KERNELS]
    for kernel in kernels:
        release = release_of(kernel)
        assert f"vmcoh/{VERSION}, {release}, x86_64: installed" in status
        assert glob.glob(f"/lib/modules/{release}/updates/dkms/vmcoh.ko*"), installed_modules()
    for kernel in kernels:
        release = release_of(kernel)
        # modprobe finds the module through the installed kernel's modules.dep.
        proc = vmrun(["sh", "-c", "modprobe vmcoh && modinfo -n vmcoh && test -c /dev/vmcoh && "
                      "grep -w '^vmcoh' /proc/modules && rmmod vmcoh"],
                     log=f"dkms-{kernel}", kernel=kernel, timeout=300)
        assert proc.returncode == 0, explain(proc)
        path = f"/lib/modules/{release}/updates/dkms/vmcoh.ko"
        assert path in proc.stdout, f"modprobe did not load the DKMS module:\n{proc.stdout}"
        print(f"{kernel}: modprobe vmcoh loaded {path}*")
