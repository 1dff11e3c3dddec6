# Cross compiling for aarch64 Linux with Debian's cross toolchain (gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross, binutils-aarch64-linux-gnu; scripts/install-deps.sh installs them).
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DEI_DEVICE_ONLY=ON
#   cmake --build build-arm64 --target ei-eval       # static; runs under qemu-aarch64 or on a board
# Only the device side builds this way (EI_DEVICE_ONLY): the host libraries would need aarch64
# OpenBLAS, HDF5, ... which a phone never runs. Another triplet: -DEI_CROSS_TRIPLET=...
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

if(NOT EI_CROSS_TRIPLET)
  set(EI_CROSS_TRIPLET aarch64-linux-gnu)
endif()
find_program(EI_CROSS_CC NAMES ${EI_CROSS_TRIPLET}-gcc)
if(NOT EI_CROSS_CC)
  message(FATAL_ERROR "edgeinfinite: ${EI_CROSS_TRIPLET}-gcc not found. Install the Debian packages "
                      "'gcc-aarch64-linux-gnu libc6-dev-arm64-cross' (scripts/install-deps.sh installs them).")
endif()
set(CMAKE_C_COMPILER ${EI_CROSS_CC})
# Try-compiles link a static executable: they need no target libraries beyond the cross libc.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

# Headers and libraries come from the cross sysroot only; programs (cmake, pkg-config) from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${EI_CROSS_TRIPLET})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# ctest / add_custom_command can run target binaries through qemu when it is installed.
find_program(EI_QEMU NAMES qemu-aarch64-static qemu-aarch64)
if(EI_QEMU)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${EI_QEMU} -L /usr/${EI_CROSS_TRIPLET})
endif()
