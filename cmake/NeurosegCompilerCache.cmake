# ccache for C++ and CUDA. pch_defines/time_macros sloppiness keeps hits with a PCH;
# CCACHE_BASEDIR makes paths relative, so sibling build folders share hits.
find_program(NEUROSEG_CCACHE ccache)
if(NEUROSEG_CCACHE)
  set(_launcher ${CMAKE_COMMAND} -E env CCACHE_BASEDIR=${PROJECT_SOURCE_DIR} CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime ${NEUROSEG_CCACHE})
  set(CMAKE_C_COMPILER_LAUNCHER ${_launcher})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${_launcher})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${_launcher})
endif()
