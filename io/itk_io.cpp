// MetaImage, NRRD, TIFF and DICOM through ITK. IO objects are created explicitly per
// format (no factory registration), and any itk::ExceptionObject becomes a one-line
// io::Error naming the file.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include <itkGDCMImageIO.h>
#include <itkGDCMSeriesFileNames.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkImageSeriesReader.h>
#include <itkMetaImageIO.h>
#include <itkNrrdImageIO.h>
#include <itkTIFFImageIO.h>
#include <itkVectorImage.h>

#include "io/atomic_output.h"
#include "io/itk_bridge.h"
#include "io/volume_io.h"

namespace neuroseg::io {
namespace {

std::string one_line(const itk::ExceptionObject& e) {
  std::string s = e.GetDescription();
  std::replace(s.begin(), s.end(), '\n', ' ');
  // Drop ITK's "ITK ERROR: NrrdImageIO(0x55d...): " prefix: the file is named by our caller.
  static const std::regex prefix(R"(^\s*ITK ERROR:\s*\w+\(0x[0-9a-f]+\):\s*)");
  s = std::regex_replace(s, prefix, "");
  // teem (NRRD) chains its call stack as "[nrrd] f: trouble [nrrd] g: ...": keep the cause.
  if (auto last = s.rfind("[nrrd] "); last != std::string::npos) s = s.substr(last + 7);
  while (!s.empty() && (s.back() == ' ' || s.back() == '.')) s.pop_back();
  return s.empty() ? "ITK error" : s;
}

itk::ImageIOBase::Pointer make_io(Format f) {
  switch (f) {
    case Format::MetaImage: return itk::MetaImageIO::New().GetPointer();
    case Format::Nrrd: return itk::NrrdImageIO::New().GetPointer();
    case Format::Tiff: return itk::TIFFImageIO::New().GetPointer();
    case Format::Dicom: return itk::GDCMImageIO::New().GetPointer();
    default: return nullptr;
  }
}

DType dtype_of_component(itk::IOComponentEnum c, const std::string& path) {
  using C = itk::IOComponentEnum;
  switch (c) {
    case C::UCHAR: return DType::UInt8;
    case C::CHAR: return DType::Int8;
    case C::SHORT: return DType::Int16;
    case C::USHORT: return DType::UInt16;
    case C::INT: return DType::Int32;
    case C::FLOAT: return DType::Float32;
    case C::DOUBLE: return DType::Float64;
    default:
      throw Error(path, "unsupported voxel type " + itk::ImageIOBase::GetComponentTypeAsString(c) +
                            " (supported: uint8, int8, int16, uint16, int32, float32, float64)");
  }
}

// Calls fn.template operator()<T>() with T the C++ type of a DType (uint16 as uint16_t).
template <typename Fn>
auto visit_dtype(DType d, Fn&& fn) {
  switch (d) {
    case DType::UInt8: return fn(uint8_t{});
    case DType::Int8: return fn(int8_t{});
    case DType::Int16: return fn(int16_t{});
    case DType::UInt16: return fn(uint16_t{});
    case DType::Int32: return fn(int32_t{});
    case DType::Float32: return fn(float{});
    default: return fn(double{});
  }
}

// Wraps an ITK buffer of `shape` (tensor order, channels-last when ncomp > 1) as a
// (C, Z, Y, X) tensor, keeping `owner` alive; uint16 is widened to int32.
template <typename T>
at::Tensor wrap_buffer(itk::LightObject* owner, T* buffer, std::vector<int64_t> shape, int64_t ncomp) {
  owner->Register();
  at::Tensor t = at::from_blob(buffer, shape, [owner](void*) { owner->UnRegister(); },
                               at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
  if (ncomp > 1) t = t.permute({3, 0, 1, 2});  // (Z, Y, X, C) -> (C, Z, Y, X)
  if (std::is_same<T, uint16_t>::value) return t.to(at::kInt).contiguous();
  return ncomp > 1 ? t.contiguous() : t;
}

template <typename T, unsigned D>
Volume read_with(const std::string& path, itk::ImageIOBase* io) {
  using Image = itk::VectorImage<T, D>;
  auto reader = itk::ImageFileReader<Image>::New();
  reader->SetFileName(path);
  reader->SetImageIO(io);
  reader->Update();
  typename Image::Pointer image = reader->GetOutput();
  image->DisconnectPipeline();
  const auto size = image->GetLargestPossibleRegion().GetSize();
  const int64_t ncomp = image->GetNumberOfComponentsPerPixel();
  if (D == 4 && ncomp > 1) throw Error(path, "4D images with vector pixels are not supported");
  std::vector<int64_t> shape;
  if (D == 2) shape = {1, int64_t(size[1]), int64_t(size[0])};
  else if (D == 3) shape = {int64_t(size[2]), int64_t(size[1]), int64_t(size[0])};
  else shape = {int64_t(size[D - 1]), int64_t(size[2]), int64_t(size[1]), int64_t(size[0])};
  if (ncomp > 1) shape.push_back(ncomp);
  else if (D != 4) shape.insert(shape.begin(), 1);
  Volume v;
  v.data = wrap_buffer<T>(image.GetPointer(), image->GetBufferPointer(), shape, ncomp);
  v.geometry = geometry_from_itk<D>(image.GetPointer());
  v.source.spatial_dims = D == 2 ? 2 : 3;
  v.source.channel_axis = ncomp > 1 ? "vector" : (D == 4 && shape[0] > 1 ? "4d" : "none");
  return v;
}

// MetaIO only prints "data not read completely" for a short payload and returns success,
// so a truncated .mha/.mhd would load with garbage: check the payload size ourselves.
void check_metaimage_payload(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::string line, data_file;
  std::map<std::string, std::string> keys;
  std::streamoff header_end = 0;
  while (std::getline(f, line)) {
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    auto trim = [](std::string t) {
      t.erase(0, t.find_first_not_of(" \t\r"));
      t.erase(t.find_last_not_of(" \t\r") + 1);
      return t;
    };
    keys[trim(line.substr(0, eq))] = trim(line.substr(eq + 1));
    if (trim(line.substr(0, eq)) == "ElementDataFile") {
      header_end = f.tellg();
      break;
    }
  }
  if (!keys.count("ElementDataFile") || !keys.count("DimSize")) return;  // ITK reports these itself
  static const std::map<std::string, int64_t> kSizes = {
      {"MET_UCHAR", 1}, {"MET_CHAR", 1}, {"MET_SHORT", 2}, {"MET_USHORT", 2}, {"MET_INT", 4},
      {"MET_UINT", 4}, {"MET_FLOAT", 4}, {"MET_DOUBLE", 8}, {"MET_LONG_LONG", 8}, {"MET_ULONG_LONG", 8}};
  const auto type = kSizes.find(keys["ElementType"]);
  if (type == kSizes.end()) return;
  int64_t expected = type->second, dim = 0;
  std::istringstream dims(keys["DimSize"]);
  while (dims >> dim) expected *= dim;
  if (keys.count("ElementNumberOfChannels")) expected *= std::max<int64_t>(1, std::stoll(keys["ElementNumberOfChannels"]));
  const bool compressed = keys["CompressedData"] == "True";
  if (compressed) {
    if (!keys.count("CompressedDataSize")) return;
    expected = std::stoll(keys["CompressedDataSize"]);
  }
  int64_t available = 0;
  if (keys["ElementDataFile"] == "LOCAL") {
    available = static_cast<int64_t>(std::filesystem::file_size(path)) - static_cast<int64_t>(header_end);
  } else {
    const auto raw = std::filesystem::path(path).parent_path() / keys["ElementDataFile"];
    std::error_code ec;
    if (!std::filesystem::exists(raw, ec)) throw Error(raw.string(), "data file named by " + path + " is missing");
    available = static_cast<int64_t>(std::filesystem::file_size(raw));
  }
  if (available < expected)
    throw Error(path, "truncated file: the voxel data needs " + std::to_string(expected) + " bytes, found " +
                          std::to_string(available));
}

template <typename T>
Volume read_dicom_series(const std::string& dir, const std::vector<std::string>& files) {
  using Image = itk::Image<T, 3>;
  auto reader = itk::ImageSeriesReader<Image>::New();
  reader->SetImageIO(itk::GDCMImageIO::New());
  reader->SetFileNames(files);
  reader->Update();
  typename Image::Pointer image = reader->GetOutput();
  image->DisconnectPipeline();
  const auto size = image->GetLargestPossibleRegion().GetSize();
  Volume v;
  v.data = wrap_buffer<T>(image.GetPointer(), image->GetBufferPointer(),
                          {1, int64_t(size[2]), int64_t(size[1]), int64_t(size[0])}, 1);
  v.geometry = geometry_from_itk<3>(image.GetPointer());
  return v;
}

template <typename Image>
void set_region(Image* image, const std::vector<int64_t>& size_xyz_t) {
  typename Image::RegionType region;
  typename Image::SizeType size;
  for (unsigned i = 0; i < Image::ImageDimension; ++i) size[i] = static_cast<itk::SizeValueType>(size_xyz_t[i]);
  region.SetSize(size);
  image->SetRegions(region);
}

template <typename Image>
void write_image(Image* image, const std::string& path, itk::ImageIOBase* io, bool compress) {
  auto writer = itk::ImageFileWriter<Image>::New();
  writer->SetInput(image);
  writer->SetFileName(path);
  writer->SetImageIO(io);
  writer->SetUseCompression(compress);
  writer->Update();
}

// ITK's own warnings go to stderr as multi-line blocks; every problem we care about is
// reported by us as one line instead.
void quiet_itk() {
  static const bool once = [] {
    itk::Object::GlobalWarningDisplayOff();
    return true;
  }();
  (void)once;
}

}  // namespace

Volume read_itk(const std::string& path, Format format) {
  quiet_itk();
  try {
    if (format == Format::Dicom && std::filesystem::is_directory(path)) {
      auto names = itk::GDCMSeriesFileNames::New();
      names->SetUseSeriesDetails(true);
      names->SetDirectory(path);
      const auto& uids = names->GetSeriesUIDs();
      if (uids.empty()) throw Error(path, "folder holds no DICOM series (and no .zarray)");
      if (uids.size() > 1) warn(path + ": " + std::to_string(uids.size()) + " DICOM series found; reading the first");
      const std::vector<std::string> files = names->GetFileNames(uids.front());
      auto io = itk::GDCMImageIO::New();
      io->SetFileName(files.front());
      io->ReadImageInformation();
      if (io->GetNumberOfComponents() != 1) throw Error(path, "colour DICOM series are not supported");
      const DType dtype = dtype_of_component(io->GetComponentType(), path);
      Volume v = visit_dtype(dtype, [&](auto tag) { return read_dicom_series<decltype(tag)>(path, files); });
      v.source.path = path;
      v.source.dtype = dtype;
      return v;
    }
    if (format == Format::MetaImage) check_metaimage_payload(path);
    itk::ImageIOBase::Pointer io = make_io(format);
    if (!io->CanReadFile(path.c_str())) throw Error(path, std::string("not a readable ") + format_name(format) + " file");
    io->SetFileName(path);
    io->ReadImageInformation();
    const unsigned dims = io->GetNumberOfDimensions();
    const DType dtype = dtype_of_component(io->GetComponentType(), path);
    for (unsigned i = 0; i < dims; ++i)
      if (io->GetDimensions(i) == 0 || io->GetDimensions(i) > (1u << 24))
        throw Error(path, "corrupt header: absurd dimension " + std::to_string(io->GetDimensions(i)));
    Volume v = visit_dtype(dtype, [&](auto tag) {
      using T = decltype(tag);
      switch (dims) {
        case 2: return read_with<T, 2>(path, io);
        case 3: return read_with<T, 3>(path, io);
        case 4: return read_with<T, 4>(path, io);
        default: throw Error(path, std::to_string(dims) + "D images are not supported (2D, 3D or 4D)");
      }
    });
    v.source.path = path;
    v.source.dtype = dtype;
    return v;
  } catch (const itk::ExceptionObject& e) {
    throw Error(path, one_line(e));
  }
}

void write_itk(const Volume& v, const std::string& path, Format format, const WriteOptions& options) {
  if (format == Format::Dicom) throw Error(path, "writing DICOM is not supported");
  const DiskVoxels disk = to_disk_voxels(v, options.dtype, /*can_store_scaling=*/false, path);
  if (format == Format::Tiff && (disk.dtype == DType::Int32 || disk.dtype == DType::Float64 || disk.dtype == DType::Int8))
    throw Error(path, std::string("TIFF cannot store ") + dtype_name(disk.dtype) +
                          " voxels here (uint8, int16, uint16, float32); pick --dtype or another format");
  const auto s = v.size_xyz();
  const int64_t nc = v.channels();
  quiet_itk();
  AtomicOutput out(path);
  try {
    itk::ImageIOBase::Pointer io = make_io(format);
    const bool compress = options.compress && format != Format::Tiff;
    visit_dtype(disk.dtype, [&](auto tag) {
      using T = decltype(tag);
      T* buffer = static_cast<T*>(disk.data.data_ptr());
      const std::size_t n = static_cast<std::size_t>(disk.data.numel());
      if (nc == 1 && v.source.spatial_dims == 2 && s[2] == 1) {
        auto image = itk::Image<T, 2>::New();
        set_region(image.GetPointer(), {s[0], s[1]});
        set_itk_geometry<2>(image.GetPointer(), v.geometry);
        image->GetPixelContainer()->SetImportPointer(buffer, n, false);
        write_image(image.GetPointer(), out.path(), io, compress);
      } else if (nc == 1) {
        auto image = itk::Image<T, 3>::New();
        set_region(image.GetPointer(), {s[0], s[1], s[2]});
        set_itk_geometry<3>(image.GetPointer(), v.geometry);
        image->GetPixelContainer()->SetImportPointer(buffer, n, false);
        write_image(image.GetPointer(), out.path(), io, compress);
      } else if (v.source.channel_axis == "4d" && format != Format::Tiff) {
        auto image = itk::Image<T, 4>::New();
        set_region(image.GetPointer(), {s[0], s[1], s[2], nc});
        set_itk_geometry<4>(image.GetPointer(), v.geometry);
        image->GetPixelContainer()->SetImportPointer(buffer, n, false);
        write_image(image.GetPointer(), out.path(), io, compress);
      } else {
        // Vector pixels are interleaved: (C, Z, Y, X) -> (Z, Y, X, C).
        at::Tensor interleaved = disk.data.permute({1, 2, 3, 0}).contiguous();
        auto image = itk::VectorImage<T, 3>::New();
        set_region(image.GetPointer(), {s[0], s[1], s[2]});
        image->SetNumberOfComponentsPerPixel(static_cast<unsigned>(nc));
        set_itk_geometry<3>(image.GetPointer(), v.geometry);
        image->GetPixelContainer()->SetImportPointer(static_cast<T*>(interleaved.data_ptr()), n, false);
        write_image(image.GetPointer(), out.path(), io, compress);
      }
      return 0;
    });
  } catch (const itk::ExceptionObject& e) {
    throw Error(path, one_line(e));
  }
  out.commit();
}

}  // namespace neuroseg::io
