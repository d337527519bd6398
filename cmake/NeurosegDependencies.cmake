# Every third-party dependency, wrapped as a neuroseg:: interface target.
find_package(Threads REQUIRED)

# LibTorch: the PyPI torch wheel (CMAKE_PREFIX_PATH=torch.utils.cmake_prefix_path)
# or any LibTorch >= 2.4 through Torch_DIR. A CUDA wheel needs the CUDA toolkit at
# configure time; nvcc on PATH is enough.
if(NOT CUDAToolkit_ROOT AND EXISTS /usr/local/cuda)
  set(CUDAToolkit_ROOT /usr/local/cuda)
endif()
# Our kernels target Ampere and Hopper (the H200 is sm_90) unless told otherwise.
if(NOT TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(TORCH_CUDA_ARCH_LIST "8.0;9.0")
endif()
find_package(Torch REQUIRED)
if(Torch_VERSION VERSION_LESS 2.4)
  message(FATAL_ERROR "neuroseg needs LibTorch >= 2.4, found ${Torch_VERSION}")
endif()
add_library(neuroseg_torch INTERFACE)
add_library(neuroseg::torch ALIAS neuroseg_torch)
# TORCH_LIBRARIES names libtorch_cuda; --no-as-needed keeps it loaded so that CUDA is
# available on GPU machines. libcuda itself is never linked: torch dlopens the driver.
# libstdc++ goes first: the wheel's libtorch.so exports its own (statically linked, broken
# when called from outside) copies of std::filesystem functions, and whichever library
# comes first in DT_NEEDED wins the symbol. fs::remove_all crashed inside libtorch.so before.
target_link_libraries(neuroseg_torch INTERFACE "-Wl,--no-as-needed" stdc++ ${TORCH_LIBRARIES} "-Wl,--as-needed")
target_compile_options(neuroseg_torch INTERFACE $<$<COMPILE_LANGUAGE:CXX>:${TORCH_CXX_FLAGS}>)
get_filename_component(NEUROSEG_TORCH_LIBDIR "${TORCH_LIBRARY}" DIRECTORY)
set(CMAKE_BUILD_RPATH "${NEUROSEG_TORCH_LIBDIR}")
# at::parallel_for is inline code in ATen's headers (ATen/ParallelOpenMP.h): without
# -fopenmp its `#pragma omp parallel` is ignored and every neuroseg loop runs on one thread,
# whatever at::set_num_threads says. Compile with OpenMP, and link the libgomp the wheel
# ships (torch/lib/libgomp.so.1, found first through the RPATH) rather than gcc's, so that
# one OpenMP runtime serves torch and us and at::set_num_threads governs both.
if(AT_PARALLEL_OPENMP OR EXISTS "${NEUROSEG_TORCH_LIBDIR}/libgomp.so.1")
  target_compile_options(neuroseg_torch INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-fopenmp>)
  if(EXISTS "${NEUROSEG_TORCH_LIBDIR}/libgomp.so.1")
    target_link_libraries(neuroseg_torch INTERFACE "${NEUROSEG_TORCH_LIBDIR}/libgomp.so.1")
  else()
    target_link_libraries(neuroseg_torch INTERFACE gomp)
  endif()
endif()

# ITK: only the IO modules we use. IO objects are created explicitly (io/itk_io.cpp),
# so no factory-registration magic is needed.
find_package(ITK 5.2 REQUIRED COMPONENTS ITKCommon ITKIOImageBase ITKIOMeta ITKIONRRD ITKIOGDCM ITKIOTIFF ITKIOPNG)
add_library(neuroseg_itk INTERFACE)
add_library(neuroseg::itk ALIAS neuroseg_itk)
target_include_directories(neuroseg_itk SYSTEM INTERFACE ${ITK_INCLUDE_DIRS})
target_link_libraries(neuroseg_itk INTERFACE ${ITK_LIBRARIES})

# OpenCV: core + imgproc only (imgcodecs drags in GDAL; PNGs go through ITK).
find_package(OpenCV 4 REQUIRED COMPONENTS core imgproc)
add_library(neuroseg_opencv INTERFACE)
add_library(neuroseg::opencv ALIAS neuroseg_opencv)
target_include_directories(neuroseg_opencv SYSTEM INTERFACE ${OpenCV_INCLUDE_DIRS})
target_link_libraries(neuroseg_opencv INTERFACE opencv_core opencv_imgproc)

find_package(nlohmann_json 3 REQUIRED)
find_package(CLI11 REQUIRED)
include(NeurosegCompression)
