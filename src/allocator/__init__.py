"""Python's allocator and the C allocator under it: which one serves the
server's objects (``_choice``, ``_preload``), and glibc's free memory returned
to the system (``_glibc``)."""

from ._choice import GLIBC_SERVED as GLIBC_SERVED
from ._choice import AUTO as AUTO
from ._choice import MARKER as MARKER
from ._choice import PRELOADABLE as PRELOADABLE
from ._choice import REQUESTS as REQUESTS
from ._choice import Allocator as Allocator
from ._choice import AllocatorUnavailable as AllocatorUnavailable
from ._choice import Plan as Plan
from ._choice import Running as Running
from ._choice import plan as plan
from ._choice import preload_env as preload_env
from ._choice import running as running
from ._glibc import MIN_FREE as MIN_FREE
from ._glibc import Glibc as Glibc
from ._glibc import Trim as Trim
from ._glibc import resident_bytes as resident_bytes
from ._glibc import Trimmer as Trimmer
from ._glibc import return_freed_memory as return_freed_memory
from ._jemalloc import Jemalloc as Jemalloc
from ._preload import current as current
from ._preload import find_libraries as find_libraries
from ._preload import mapped_files as mapped_files
from ._preload import plan_here as plan_here
from ._preload import reexec as reexec
