// Round trips through every format and dtype: voxels bit-identical, geometry exact
// (direction within 1e-6), channel layout kept. Plus the format-specific details.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "io/error.h"
#include "io/nifti_header.h"
#include "io/volume_io.h"
#include "io/zarr_format.h"
#include "support/test_support.h"

using namespace neuroseg;
namespace fs = std::filesystem;

namespace {

const io::DType kAllTypes[] = {io::DType::UInt8, io::DType::Int8,    io::DType::Int16,  io::DType::UInt16,
                               io::DType::Int32, io::DType::Float32, io::DType::Float64};

void check_round_trip(const io::Volume& v, const std::string& path, bool geometry_kept = true) {
  io::write_volume(v, path);
  const io::Volume r = io::read_volume(path);
  INFO(path);
  CHECK(r.source.dtype == v.source.dtype);
  REQUIRE((r.data.sizes() == v.data.sizes()));
  CHECK((r.data.scalar_type() == v.data.scalar_type()));
  CHECK(at::equal(r.data, v.data));
  if (geometry_kept) CHECK(r.geometry.approx_equal(v.geometry, 1e-6, 1e-6));
}

// A 3-channel volume written as 4D and as vector pixels keeps that layout through `format`.
void check_channel_layouts(const testing::ScratchDir& dir, io::DType dtype, const std::string& ext_4d,
                           const std::string& ext_vector) {
  io::Volume v = testing::make_volume(dtype, 3);
  check_round_trip(v, dir.file("four" + ext_4d));
  CHECK(io::read_volume(dir.file("four" + ext_4d)).source.channel_axis == "4d");
  v.source.channel_axis = "vector";
  check_round_trip(v, dir.file("vec" + ext_vector));
  CHECK(io::read_volume(dir.file("vec" + ext_vector)).source.channel_axis == "vector");
}

}  // namespace

TEST_SUITE("io_nifti") {
  TEST_CASE("every dtype round-trips through .nii, .nii.gz and NIfTI-2") {
    testing::ScratchDir dir("nifti_dtypes");
    for (io::DType t : kAllTypes) {
      io::Volume v = testing::make_volume(t);
      check_round_trip(v, dir.file(std::string("a_") + io::dtype_name(t) + ".nii"));
      check_round_trip(v, dir.file(std::string("b_") + io::dtype_name(t) + ".nii.gz"));
      v.source.nifti_version = 2;
      check_round_trip(v, dir.file(std::string("c_") + io::dtype_name(t) + ".nii.gz"));
      CHECK(io::read_volume(dir.file(std::string("c_") + io::dtype_name(t) + ".nii.gz")).source.nifti_version == 2);
    }
  }

  TEST_CASE("4D and vector volumes keep their channel layout") {
    testing::ScratchDir dir("nifti_4d");
    check_channel_layouts(dir, io::DType::Int16, ".nii.gz", ".nii.gz");
  }

  TEST_CASE("scaled integers are stored back with their slope and intercept") {
    testing::ScratchDir dir("nifti_scaled");
    io::Volume v = testing::make_volume(io::DType::Int16);
    v.data = v.data.to(at::kFloat) * 0.25f + 3.0f;
    v.source.scl_slope = 0.25;
    v.source.scl_inter = 3.0;
    io::write_volume(v, dir.file("s.nii"));
    const io::Volume r = io::read_volume(dir.file("s.nii"));
    CHECK(r.source.dtype == io::DType::Int16);
    CHECK(r.source.scl_slope == 0.25);
    CHECK(at::equal(r.data, v.data));
    // Values the scaling cannot reproduce are written as float32 instead of being rounded.
    v.data[0][0][0][0] = 0.1f;
    io::write_volume(v, dir.file("f.nii"));
    const io::Volume f = io::read_volume(dir.file("f.nii"));
    CHECK(f.source.dtype == io::DType::Float32);
    CHECK(at::equal(f.data, v.data));
  }

  TEST_CASE("header parser: codes, qform/sform preference and validation") {
    io::NiftiHeader h;
    h.dim = {3, 4, 5, 6, 1, 1, 1, 1};
    h.datatype = 4;
    h.pixdim = {1, 1, 1, 1, 0, 0, 0, 0};
    const std::array<double, 16> affine{0, 0, 2.5, 10, -1.2, 0, 0, 20, 0, 3, 0, -30, 0, 0, 0, 1};
    io::nifti_set_affine(h, affine);
    h.qform_code = 1;
    h.sform_code = 0;
    std::vector<uint8_t> bytes = io::serialize_nifti_header(h);
    io::NiftiHeader p = io::parse_nifti_header(bytes.data(), bytes.size(), "x.nii");
    auto q = io::nifti_best_affine(p);  // from the quaternion
    for (int k = 0; k < 12; ++k) CHECK(q[k] == doctest::Approx(affine[k]).epsilon(1e-6));
    // sform wins when both are set and disagree (nibabel, FSL, SPM).
    h.sform_code = 2;
    h.srow_x[3] = 99;
    bytes = io::serialize_nifti_header(h);
    p = io::parse_nifti_header(bytes.data(), bytes.size(), "x.nii");
    CHECK(io::nifti_best_affine(p)[3] == doctest::Approx(99));

    CHECK_THROWS_WITH(io::parse_nifti_header(bytes.data(), 100, "x.nii"),
                      "x.nii: truncated NIfTI header (100 bytes, need 348)");
    std::vector<uint8_t> bad = bytes;
    bad[344] = 'z';
    CHECK_THROWS_WITH(io::parse_nifti_header(bad.data(), bad.size(), "x.nii"), "x.nii: bad NIfTI-1 magic (not 'n+1')");
    io::NiftiHeader c = h;
    c.datatype = 32;
    bad = io::serialize_nifti_header(c);
    CHECK_THROWS_WITH(io::parse_nifti_header(bad.data(), bad.size(), "x.nii"),
                      doctest::Contains("unsupported NIfTI datatype complex64"));
  }

  TEST_CASE("big-endian headers and data are read") {
    const io::Volume real = io::read_volume(testing::nibabel_data("anatomical.nii"));  // '>i2', written by nibabel
    CHECK(real.source.dtype == io::DType::Int16);
    CHECK(real.size_xyz() == std::array<int64_t, 3>{33, 41, 25});
    CHECK(real.data.max().item<int>() > 0);
  }
}

TEST_SUITE("io_zarr") {
  TEST_CASE("every dtype and compressor round-trips, geometry in .zattrs") {
    testing::ScratchDir dir("zarr_dtypes");
    for (io::DType t : kAllTypes)
      for (const char* comp : {"", "zlib", "gzip", "blosc", "zstd"}) {
        io::Volume v = testing::make_volume(t, 2, 9, 10, 11);  // CZYX, edge chunks of 3 voxels
        io::WriteOptions o;
        o.zarr_chunk = 4;
        o.zarr_compressor = comp;
        const std::string p = dir.file(std::string(io::dtype_name(t)) + "_" + comp + ".zarr");
        io::write_volume(v, p, o);
        const io::Volume r = io::read_volume(p);
        CHECK(at::equal(r.data, v.data));
        CHECK(r.source.dtype == t);
        CHECK(r.geometry.approx_equal(v.geometry, 1e-12, 1e-12));
      }
  }

  TEST_CASE("missing chunks read as fill_value; big-endian dtypes are swapped") {
    testing::ScratchDir dir("zarr_fill");
    const fs::path arr = dir.path() / "a.zarr";
    fs::create_directories(arr);
    io::ZarrArrayMeta m;
    m.shape = {3, 4, 5};
    m.chunks = {2, 4, 5};
    m.kind = 'i';
    m.itemsize = 2;
    m.big_endian = true;
    m.fill_value = 7;
    std::ofstream(arr / ".zarray") << io::serialize_zarray(m);
    // Write chunk 0 (z 0..1) as big-endian values 0..39; chunk 1 is missing.
    io::Bytes raw(2 * 4 * 5 * 2);
    for (int i = 0; i < 40; ++i) {
      const int16_t v = static_cast<int16_t>(i * 300);
      std::memcpy(raw.data() + 2 * i, &v, 2);
    }
    const io::Bytes enc = io::encode_chunk(m, raw);
    std::ofstream(arr / "0.0.0", std::ios::binary).write(reinterpret_cast<const char*>(enc.data()), enc.size());
    const io::Volume v = io::read_volume(arr.string());
    CHECK((v.data.sizes() == at::IntArrayRef{1, 3, 4, 5}));
    CHECK(v.data[0][1][3][4].item<int>() == 39 * 300);
    CHECK(v.data[0][2][0][0].item<int>() == 7);
  }

  TEST_CASE(".zarray validation names the problem") {
    auto err = [](const std::string& json) {
      try {
        io::parse_zarray(json, "a/.zarray");
      } catch (const io::Error& e) {
        return std::string(e.what());
      }
      return std::string("no error");
    };
    const std::string base = R"("zarr_format": 2, "chunks": [2, 2], "compressor": null, "fill_value": 0)";
    CHECK(err("{" + base + R"(, "shape": [4, 4], "dtype": "<c8"})") == "a/.zarray: unsupported dtype '<c8' (supported: |b1 u1 i1 u2 i2 i4 f4 f8)");
    CHECK(err("{" + base + R"(, "shape": [4, 4], "dtype": "<i2", "order": "F"})") == "a/.zarray: order 'F' is not supported (only C order)");
    CHECK(err("{" + base + R"(, "shape": [4], "dtype": "<i2"})") == "a/.zarray: shape and chunks have different lengths in .zarray");
    CHECK(err(R"({"zarr_format": 3})") == "a/.zarray: unsupported zarr_format (only zarr v2 is supported)");
    CHECK(err("{" + base + R"(, "shape": [4000000000, 4000000000], "dtype": "<i2"})") == "a/.zarray: absurd shape (too many voxels)");
  }
}

TEST_SUITE("io_itk") {
  TEST_CASE("MetaImage and NRRD keep every dtype, channels and geometry") {
    testing::ScratchDir dir("itk_dtypes");
    for (io::DType t : kAllTypes)
      for (const char* ext : {".mha", ".mhd", ".nrrd", ".nhdr"}) {
        check_round_trip(testing::make_volume(t), dir.file(std::string(io::dtype_name(t)) + ext));
      }
    check_channel_layouts(dir, io::DType::Float32, ".mha", ".nrrd");
  }

  TEST_CASE("TIFF stacks keep voxels for the types TIFF holds, and refuse the others") {
    testing::ScratchDir dir("itk_tiff");
    for (io::DType t : {io::DType::UInt8, io::DType::Int16, io::DType::UInt16, io::DType::Float32})
      check_round_trip(testing::make_volume(t), dir.file(std::string(io::dtype_name(t)) + ".tif"),
                       /*geometry_kept=*/false);
    CHECK_THROWS_WITH_AS(io::write_volume(testing::make_volume(io::DType::Float64), dir.file("d.tif")),
                         doctest::Contains("TIFF cannot store float64"), io::Error);
    CHECK_FALSE(fs::exists(dir.file("d.tif")));
  }

  TEST_CASE("a DICOM file is read with pydicom's geometry") {
    const io::Volume v = io::read_volume(testing::pydicom_data("MR_small.dcm"));
    CHECK(v.size_xyz()[0] == 64);
    CHECK(v.size_xyz()[1] == 64);
    CHECK(v.geometry.spacing[0] == doctest::Approx(0.3125));
    CHECK(v.source.format == "dicom");
  }
}

TEST_SUITE("io_errors") {
  TEST_CASE("a failed write leaves neither the output nor a temporary behind") {
    testing::ScratchDir dir("atomic");
    io::Volume v = testing::make_volume(io::DType::Int32);
    v.data = v.data * 1000;
    io::WriteOptions o;
    o.dtype = io::DType::Int8;
    for (const char* name : {"x.nii.gz", "x.mha", "x.zarr"})
      CHECK_THROWS_WITH_AS(io::write_volume(v, dir.file(name), o), doctest::Contains("do not fit int8"), io::Error);
    CHECK(fs::is_empty(dir.path()));
    // An existing output is replaced only by a complete one.
    io::write_volume(testing::make_volume(io::DType::UInt8), dir.file("keep.nii.gz"));
    CHECK_THROWS(io::write_volume(v, dir.file("keep.nii.gz"), o));
    CHECK(io::read_volume(dir.file("keep.nii.gz")).source.dtype == io::DType::UInt8);
    CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()) == 1);
  }

  TEST_CASE("NaN voxels produce one warning with the count") {
    testing::ScratchDir dir("nan");
    io::Volume v = testing::make_volume(io::DType::Float32);
    v.data[0][0][0][0] = NAN;
    v.data[0][0][0][1] = NAN;
    v.data[0][0][0][2] = -INFINITY;
    io::write_volume(v, dir.file("n.nii.gz"));
    testing::WarningCapture warnings;
    io::read_volume(dir.file("n.nii.gz"));
    CHECK(warnings.text().find("3 of 210 voxels are NaN or Inf") != std::string::npos);
    CHECK_THROWS_WITH_AS(io::write_volume(v, dir.file("n.nii"), {io::DType::Int16}),
                         doctest::Contains("NaN/Inf voxels cannot be written as int16"), io::Error);
  }

  TEST_CASE("unknown or unwritable formats") {
    CHECK_THROWS_WITH_AS(io::read_volume("/nonexistent/a.nii"), "/nonexistent/a.nii: no such file or folder", io::Error);
    CHECK_THROWS_WITH_AS(io::detect_output_format("a.png"), doctest::Contains("a.png: unknown output format"), io::Error);
  }
}
