#pragma once
// itk::Image <-> Volume. An itk::Image<T,3> of size (X, Y, Z) is, byte for byte, a C-order
// (Z, Y, X) tensor, so both directions alias memory instead of copying:
//  * to_volume: a tensor over the image buffer that keeps the image alive (deleter holds
//    the SmartPointer);
//  * to_itk_image: an image over the tensor's buffer; the caller keeps the tensor alive.
// Include only from .cpp files: ITK headers are heavy.
#include <itkImage.h>

#include <ATen/ATen.h>

#include "io/error.h"
#include "io/volume.h"

namespace neuroseg::io {

template <unsigned D>
Geometry geometry_from_itk(const itk::ImageBase<D>* image) {
  Geometry g;
  const unsigned n = std::min(D, 3u);
  for (unsigned i = 0; i < n; ++i) {
    g.spacing[i] = image->GetSpacing()[i];
    g.origin[i] = image->GetOrigin()[i];
    for (unsigned j = 0; j < n; ++j) g.direction[i * 3 + j] = image->GetDirection()(i, j);
  }
  return g;
}

template <unsigned D>
void set_itk_geometry(itk::ImageBase<D>* image, const Geometry& g) {
  typename itk::ImageBase<D>::SpacingType spacing;
  typename itk::ImageBase<D>::PointType origin;
  typename itk::ImageBase<D>::DirectionType direction;
  direction.SetIdentity();
  spacing.Fill(1.0);
  origin.Fill(0.0);
  const unsigned n = std::min(D, 3u);
  for (unsigned i = 0; i < n; ++i) {
    spacing[i] = g.spacing[i];
    origin[i] = g.origin[i];
    for (unsigned j = 0; j < n; ++j) direction(i, j) = g.direction[i * 3 + j];
  }
  image->SetSpacing(spacing);
  image->SetOrigin(origin);
  image->SetDirection(direction);
}

/// Zero-copy view of a 3D ITK image as a (1, Z, Y, X) volume (dtype T's tensor type).
template <typename T>
Volume to_volume(typename itk::Image<T, 3>::Pointer image) {
  const auto size = image->GetLargestPossibleRegion().GetSize();
  itk::Image<T, 3>* raw = image.GetPointer();
  raw->Register();  // released by the tensor's deleter
  Volume v;
  v.data = at::from_blob(
      raw->GetBufferPointer(), {1, int64_t(size[2]), int64_t(size[1]), int64_t(size[0])},
      [raw](void*) { raw->UnRegister(); }, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
  v.geometry = geometry_from_itk<3>(raw);
  return v;
}

/// A 3D ITK image over channel `c` of the volume's memory when it is contiguous CPU data
/// of type T (no copy); otherwise over a converted copy that the image owns.
template <typename T>
typename itk::Image<T, 3>::Pointer to_itk_image(const Volume& v, int64_t c = 0) {
  using Image = itk::Image<T, 3>;
  auto image = Image::New();
  typename Image::RegionType region;
  typename Image::SizeType size;
  const auto s = v.size_xyz();
  for (int i = 0; i < 3; ++i) size[i] = static_cast<itk::SizeValueType>(s[i]);
  region.SetSize(size);
  image->SetRegions(region);
  set_itk_geometry<3>(image.GetPointer(), v.geometry);
  at::Tensor channel = v.data[c];
  const auto type = c10::CppTypeToScalarType<T>::value;
  const std::size_t n = static_cast<std::size_t>(channel.numel());
  if (channel.device().is_cpu() && channel.scalar_type() == type && channel.is_contiguous()) {
    image->GetPixelContainer()->SetImportPointer(channel.data_ptr<T>(), n, /*LetContainerManageMemory=*/false);
  } else {
    image->Allocate();
    at::Tensor converted = channel.to(at::kCPU).to(type).contiguous();
    std::memcpy(image->GetBufferPointer(), converted.data_ptr<T>(), n * sizeof(T));
  }
  return image;
}

}  // namespace neuroseg::io
