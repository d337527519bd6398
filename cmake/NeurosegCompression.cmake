# zlib, blosc and zstd for the zarr codecs (and gzip'd NIfTI).
find_package(ZLIB REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(BLOSC REQUIRED IMPORTED_TARGET blosc)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)
add_library(neuroseg_compression INTERFACE)
add_library(neuroseg::compression ALIAS neuroseg_compression)
target_link_libraries(neuroseg_compression INTERFACE ZLIB::ZLIB PkgConfig::BLOSC PkgConfig::ZSTD)
